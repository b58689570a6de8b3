//! BGP-4 wire codec: messages, attributes, capabilities (no IO)
