// dashboard-check decodes Grafana dashboard JSON strictly into the Grafana Foundation SDK's
// dashboard types, with every core panel and datasource query type registered: an unknown
// or misspelt field, a value of the wrong type or a missing required one fails, in the
// dashboard, its panels' options and field config, and its Prometheus queries. The import
// keys (`__inputs`, `__requires`), which Grafana's import consumes before it reads the
// model, are checked for shape and then removed. It stands in for importing into a
// Grafana server where none can run.
//
//	go run ./scripts/dashboard-check deploy/grafana/dashboards/*.json
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// input is one entry of `__inputs`: what the import dialog asks for.
type input struct {
	Name        string `json:"name"`
	Label       string `json:"label"`
	Description string `json:"description"`
	Type        string `json:"type"`
	PluginID    string `json:"pluginId"`
	PluginName  string `json:"pluginName"`
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	if inputs, ok := fields["__inputs"]; ok {
		var parsed []input
		dec := json.NewDecoder(bytes.NewReader(inputs))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&parsed); err != nil {
			return fmt.Errorf("__inputs: %w", err)
		}
		for _, in := range parsed {
			if in.Type != "datasource" || in.PluginID == "" || in.Name == "" {
				return fmt.Errorf("__inputs: %q is not a datasource input", in.Name)
			}
		}
	}
	delete(fields, "__inputs")
	delete(fields, "__requires")
	model, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	var board dashboard.Dashboard
	if err := failure(board.UnmarshalJSONStrict(model)); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	if err := failure(board.Validate()); err != nil {
		return fmt.Errorf("validating: %w", err)
	}
	// The SDK drops what it decoded strictly whenever its list of errors is empty (that
	// list is returned as a non-nil error), so panels and their queries are decoded again
	// here, one by one, to see each query's type and expression.
	var panels []map[string]json.RawMessage
	if err := json.Unmarshal(fields["panels"], &panels); err != nil {
		return fmt.Errorf("panels: %w", err)
	}
	targets := 0
	for i, rawPanel := range panels {
		var queries []json.RawMessage
		if err := json.Unmarshal(rawPanel["targets"], &queries); err != nil && rawPanel["targets"] != nil {
			return fmt.Errorf("panels[%d].targets: %w", i, err)
		}
		for j, rawQuery := range queries {
			var query prometheus.Dataquery
			if err := failure(query.UnmarshalJSONStrict(rawQuery)); err != nil {
				return fmt.Errorf("panels[%d].targets[%d]: %w", i, j, err)
			}
			if query.Expr == "" || query.Datasource == nil || query.Datasource.Type == nil || *query.Datasource.Type != "prometheus" {
				return fmt.Errorf("panels[%d].targets[%d]: not a query of a Prometheus datasource", i, j)
			}
			targets++
		}
	}
	fmt.Printf("%s: ok (%d panels, %d queries)\n", path, len(panels), targets)
	return nil
}

// failure is err unless it is the SDK's empty list of errors (a nil slice in an interface).
func failure(err error) error {
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}

func main() {
	plugins.RegisterDefaultPlugins()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-check DASHBOARD.json ...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
