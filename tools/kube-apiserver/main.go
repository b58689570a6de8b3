// kube-apiserver built from the published k8s.io modules, for margay's tests
// and lab. k8s.io/kubernetes cannot be `go install`ed because its go.mod
// replaces its staging modules with local paths; this module pins them to
// the published v0.Y.Z releases instead (see go.mod).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	os.Exit(cli.Run(command))
}
