// compose-check loads a compose file with compose-go, the library `docker compose`
// itself uses: the file is validated against the Compose specification's schema,
// interpolated and normalised, then printed back. It stands in for `docker compose
// config` on machines without the compose plugin.
//
//	go run ./scripts/compose-check deploy/compose/docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE")
		os.Exit(2)
	}
	path, _ := filepath.Abs(os.Args[1])
	opts, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithOsEnv,
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
