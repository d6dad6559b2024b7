// Command storectl manages stores from a terminal over gRPC:
//
//	storectl create --name "Corner Shop" --engine woocommerce
//	storectl list | get ID | delete ID | retry ID | watch
//	storectl upgrade ID [--chart-version V] [--set key=value]…
//	storectl audit --store ID
//	storectl audit verify [--known-hash HASH]
//	storectl token create --user alice [--ttl 720h]
//	storectl token list | revoke ID
//	storectl user set alice --admin=false
//
// It reads the API token from --token, $STOREPROV_TOKEN or
// .cache/dev/token (written by make dev).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand(os.Stdout).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "storectl:", err)
		os.Exit(1)
	}
}
