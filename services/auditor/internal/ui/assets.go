package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static/htmx.min.js static/console.css
var staticFS embed.FS

// assets are the console's static files, served with a long cache life
// under URLs that carry their content's hash, so that a new binary's files
// are fetched again.
type assets struct {
	files   http.Handler
	version map[string]string // file name -> hash prefix
}

func loadAssets() (*assets, error) {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	a := &assets{files: http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub)), version: map[string]string{}}
	for _, name := range []string{"htmx.min.js", "console.css"} {
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return nil, fmt.Errorf("console asset %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		a.version[name] = hex.EncodeToString(sum[:6])
	}
	return a, nil
}

// url is the versioned URL of a static file.
func (a *assets) url(name string) string {
	return Prefix + "/static/" + name + "?v=" + a.version[name]
}

func (a *assets) serve(c echo.Context) error {
	name := strings.TrimPrefix(c.Request().URL.Path, Prefix+"/static/")
	if _, ok := a.version[name]; !ok {
		return echo.NewHTTPError(http.StatusNotFound, "no such file")
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	a.files.ServeHTTP(c.Response(), c.Request())
	return nil
}
