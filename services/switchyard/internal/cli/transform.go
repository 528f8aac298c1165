package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/mapping"
)

// ErrFixturesFailed is returned by `transform test` when a fixture's
// output differs from the one expected, or its transformation fails.
var ErrFixturesFailed = errors.New("transformation fixtures failed")

// ErrUnknownDestination is returned by `transform test --destination` for
// a destination the configuration does not name.
var ErrUnknownDestination = errors.New("no destination")

// transformCmd groups the commands about destinations' transformations.
func transformCmd(load func() (config.Config, error), cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transform",
		Short: "Work with the destinations' filters and transformations",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(transformTestCmd(load, cfgPath))
	return cmd
}

// transformTestCmd runs every destination's transformation over its
// example files and shows a diff where the output is not the one
// expected, so that a team can keep its integration mappings in CI.
func transformTestCmd(load func() (config.Config, error), cfgPath func() string) *cobra.Command {
	var dir, only string
	var update bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Run every destination's transformation over testdata/<destination>/*.in.json and compare with *.out.json",
		Long: "For each destination with a filter or a transformation, run it over every <name>.in.json in\n" +
			"<dir>/<destination>/ (a stored body; <name>.event.json may give its type, source, subject, id and\n" +
			"headers) and compare the body it makes with <name>.out.json, as JSON: a difference is shown as a\n" +
			"diff of the indented documents (- expected, + produced). An event the filter leaves out passes when\n" +
			"there is no <name>.out.json. Exits non-zero when a fixture fails. --update writes the produced\n" +
			"bodies into the .out.json files instead (review the diff before committing).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if dir == "" {
				dir = filepath.Join(filepath.Dir(cfgPath()), "testdata")
			}
			return runTransformTests(cmd, cfg, dir, only, update)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the fixtures' directory, one folder per destination (default: testdata next to the configuration file)")
	cmd.Flags().StringVar(&only, "destination", "", "test only this destination")
	cmd.Flags().BoolVar(&update, "update", false, "write the produced bodies into the .out.json files")
	return cmd
}

func runTransformTests(cmd *cobra.Command, cfg config.Config, dir, only string, update bool) error {
	out := cmd.OutOrStdout()
	passed, failed := 0, 0
	found := false
	for _, d := range cfg.Destinations {
		if only != "" && d.Name != only {
			continue
		}
		found = true
		spec := d.MappingSpec()
		if spec.Empty() {
			continue
		}
		m, err := mapping.Compile(spec)
		if err != nil {
			return fmt.Errorf("destination %q: %w", d.Name, err)
		}
		results, err := mapping.RunFixtures(cmd.Context(), m, filepath.Join(dir, d.Name))
		if err != nil {
			return err
		}
		label := d.Name
		if v := m.Version(); v != "" {
			label += " (transformation " + v + ")"
		}
		if len(results) == 0 {
			fmt.Fprintf(out, "%s: no fixtures in %s\n", label, filepath.Join(dir, d.Name))
			continue
		}
		fmt.Fprintf(out, "%s:\n", label)
		for _, r := range results {
			name := filepath.Base(r.Name)
			switch {
			case r.Err != nil:
				failed++
				fmt.Fprintf(out, "  FAIL %s: %v\n", name, r.Err)
			case r.OK() && r.Filtered:
				passed++
				fmt.Fprintf(out, "  ok   %s (left out by the filter)\n", name)
			case r.OK():
				passed++
				fmt.Fprintf(out, "  ok   %s%s\n", name, requestLine(r))
			case update && !r.Filtered:
				if err := os.WriteFile(r.Name+mapping.FixtureOut, r.Got, 0o600); err != nil {
					return err
				}
				passed++
				fmt.Fprintf(out, "  updated %s%s\n", name+mapping.FixtureOut, requestLine(r))
			default:
				failed++
				fmt.Fprintf(out, "  FAIL %s%s\n%s", name, requestLine(r), indentLines(r.Diff, "    "))
			}
		}
	}
	if only != "" && !found {
		return fmt.Errorf("%w %q in the configuration", ErrUnknownDestination, only)
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d", ErrFixturesFailed, failed, passed+failed)
	}
	return nil
}

// requestLine shows the templated path and headers of a fixture's request.
func requestLine(r mapping.FixtureResult) string {
	var parts []string
	if r.Path != "" {
		parts = append(parts, "path "+r.Path)
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		parts = append(parts, k+": "+strings.Join(r.Header[k], ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func indentLines(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}
