//! margay's BGP speaker: sans-IO FSM, RIB and policy plus thin tokio tasks
