package switchyardv1_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/switchyard/switchyard/proto/switchyard/v1" // registers the committed descriptors
)

// TestGeneratedCodeIsCurrent compiles every .proto file under proto/ and
// compares it with the descriptor embedded in the committed Go code, so that
// editing a .proto file without running `make generate` fails the tests.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".proto") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("find .proto files: %v (found %d)", err, len(files))
	}
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
	}
	compiled, err := compiler.Compile(context.Background(), files...)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	for _, f := range compiled {
		fromSource := protodesc.ToFileDescriptorProto(f)
		fromSource.SourceCodeInfo = nil
		desc, err := protoregistry.GlobalFiles.FindFileByPath(f.Path())
		if err != nil {
			t.Errorf("%s has no generated Go code: run `make generate` and commit the result", f.Path())
			continue
		}
		committed := protodesc.ToFileDescriptorProto(desc)
		committed.SourceCodeInfo = nil
		if !proto.Equal(fromSource, committed) {
			t.Errorf("the generated code for %s is stale: run `make generate` and commit the result", f.Path())
		}
	}
}
