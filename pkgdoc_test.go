package peercam_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every package says why it exists: "// Package x …", or "// Command x …" for
// binaries.
func TestPackageDocs(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules") {
			return filepath.SkipDir
		}
		entries, _ := os.ReadDir(path)
		var files []string
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
				files = append(files, filepath.Join(path, n))
			}
		}
		if len(files) == 0 {
			return nil
		}
		documented := false
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			if af.Doc == nil {
				continue
			}
			doc := af.Doc.Text()
			if strings.HasPrefix(doc, "Package "+af.Name.Name+" ") || (af.Name.Name == "main" && strings.HasPrefix(doc, "Command ")) {
				documented = true
			}
		}
		if !documented {
			t.Errorf("%s: no file starts with a \"// Package …\" (or \"// Command …\") comment saying why the package exists", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
