// Command storectl manages stores from a terminal over gRPC:
//
//	storectl create --name "Corner Shop" --engine woocommerce [--request-id ID]
//	storectl list | get ID | delete ID | retry ID | watch
//	storectl upgrade ID [--chart-version V] [--set key=value]…
//	storectl audit --store ID
//	storectl audit verify [--known-hash HASH]
//	storectl token create --user alice [--ttl 720h]
//	storectl token list | revoke ID
//	storectl user set alice --admin=false
//
// It reads the API token from --token, $STOREPROV_TOKEN or
// .cache/dev/token (written by make dev). It exits with status 1 on any
// error, which it prints on stderr.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs storectl with args, printing to stdout and its error to
// stderr, and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := newRootCommand(stdout)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "storectl:", err)
		return 1
	}
	return 0
}
