package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The documentation links into itself a lot: DESIGN.md into the decision
// records, the records into each other and into DESIGN.md's sections, the
// README into both. These checks keep every relative link pointing at a file
// that exists and every #anchor at a heading that exists, by GitHub's rules.

// docFiles are the markdown files whose links are checked, relative to the
// repository root; every markdown file under docs/ is added to them.
var docFiles = []string{"README.md", "DESIGN.md", "CHANGELOG.md"}

var (
	// errNoTarget: a link names a file or directory that does not exist.
	errNoTarget = errors.New("no such file or directory")
	// errNoAnchor: a link's #anchor names no heading of the markdown file.
	errNoAnchor = errors.New("no heading with this anchor")
	// errOutsideRepo: a relative link leaves the repository.
	errOutsideRepo = errors.New("points outside the repository")
)

// brokenLink is one link that does not resolve.
type brokenLink struct {
	file   string // relative to the repository root
	line   int
	target string // as written
	err    error  // wraps errNoTarget, errNoAnchor or errOutsideRepo
}

func (b brokenLink) String() string {
	return fmt.Sprintf("%s:%d: link %q: %v", b.file, b.line, b.target, b.err)
}

func TestDocsLinks(t *testing.T) {
	files := slices.Clone(docFiles)
	var underDocs int
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(repoRoot, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
			underDocs++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list docs/: %v", err)
	}
	if underDocs == 0 {
		t.Fatal("no markdown files under docs/: the decision records and measurements are missing")
	}

	broken, checked, err := checkLinks(repoRoot, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Error(b)
	}
	t.Logf("checked %d relative links in %d files", checked, len(files))
	// DESIGN.md alone links to the decision records dozens of times; far
	// fewer links checked means the parser stopped seeing them.
	if checked < 200 {
		t.Errorf("checked %d relative links in %d files; expected at least 200 (is the link parser blind?)", checked, len(files))
	}
}

// TestDocsLinkCheckFindsBrokenLinks runs the checker over a small tree with
// one link of every kind, good and broken, so that TestDocsLinks passing
// means something.
func TestDocsLinkCheckFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/b.md", "# B\n\n## Cross-cutting rules\n\ntext\n\n## Failure table\n\n## Failure table\n")
	write("src/x.go", "package x\n")
	write("a.md", strings.Join([]string{
		"# A: the `first` heading",
		"[self](#a-the-first-heading) [dir](src) [file](src/x.go#L1) [web](https://example.com/nowhere)",
		"[rule](docs/b.md#cross-cutting-rules) [second](docs/b.md#failure-table-1)",
		"[gone](docs/missing.md)",                 // line 4
		"[no heading](docs/b.md#no-such-heading)", // line 5
		"```",
		"[in a fence](nowhere.md)",
		"```",
		"`[in code](nowhere.md)` [escape](../outside.md)", // line 9
		"[up]: docs/b.md#nothing-here",                    // line 10
		"[same file](#not-here)",                          // line 11
	}, "\n")+"\n")

	broken, checked, err := checkLinks(root, []string{"a.md", "docs/b.md"})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		line int
		err  error
	}
	wants := []want{{4, errNoTarget}, {5, errNoAnchor}, {9, errOutsideRepo}, {10, errNoAnchor}, {11, errNoAnchor}}
	if len(broken) != len(wants) {
		t.Fatalf("found %d broken links, want %d: %v", len(broken), len(wants), broken)
	}
	for i, w := range wants {
		if broken[i].file != "a.md" || broken[i].line != w.line || !errors.Is(broken[i].err, w.err) {
			t.Errorf("broken link %d = %v; want a.md:%d with %v", i, broken[i], w.line, w.err)
		}
	}
	if checked != 10 {
		t.Errorf("checked %d relative links, want 10", checked)
	}
}

func TestDocsAnchors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ heading, want string }{
		{"Idempotency, end to end", "idempotency-end-to-end"},
		{"Switchyard — architecture", "switchyard--architecture"},
		{"`pkg` — shared by the services", "pkg--shared-by-the-services"},
		{"Audit log: queries and replay", "audit-log-queries-and-replay"},
		{"KV buckets", "kv-buckets"},
		{"`switchyard_breakers`", "switchyard_breakers"},
		{"Audit query plans at 10 million attempts", "audit-query-plans-at-10-million-attempts"},
		{"[Unreleased]", "unreleased"},
		{"[0.1.0] - 2026-11-29", "010---2026-11-29"},
		{"See [the README](README.md) **now**", "see-the-readme-now"},
	} {
		if got := anchor(tc.heading); got != tc.want {
			t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}

// checkLinks checks every relative link in files (paths relative to root)
// and returns those that do not resolve, and how many were checked.
func checkLinks(root string, files []string) ([]brokenLink, int, error) {
	anchors := map[string]map[string]bool{} // markdown file (slash path) → its anchors
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := anchors[rel]; ok {
			return a, nil
		}
		raw, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		a := headingAnchors(string(raw))
		anchors[rel] = a
		return a, nil
	}

	var broken []brokenLink
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", file, err)
		}
		for _, l := range markdownLinks(string(raw)) {
			if !isRelative(l.target) {
				continue
			}
			checked++
			fail := func(err error) {
				broken = append(broken, brokenLink{file: file, line: l.line, target: l.target, err: err})
			}
			pathPart, fragment, _ := strings.Cut(l.target, "#")
			target := file // a bare #anchor is into the file itself
			if pathPart != "" {
				p, err := url.PathUnescape(pathPart)
				if err != nil {
					fail(fmt.Errorf("%w: %v", errNoTarget, err))
					continue
				}
				if strings.HasPrefix(p, "/") { // GitHub: relative to the repository root
					target = filepath.ToSlash(filepath.Clean(strings.TrimPrefix(p, "/")))
				} else {
					target = filepath.ToSlash(filepath.Join(filepath.Dir(file), p))
				}
				if target == ".." || strings.HasPrefix(target, "../") {
					fail(errOutsideRepo)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(target))); err != nil {
					fail(fmt.Errorf("%w: %s", errNoTarget, target))
					continue
				}
			}
			if fragment == "" || !strings.HasSuffix(target, ".md") {
				continue // anchors into code (#L12) and directories are GitHub's business
			}
			a, err := anchorsOf(target)
			if err != nil {
				return nil, 0, fmt.Errorf("read %s: %w", target, err)
			}
			if f, err := url.PathUnescape(fragment); err != nil || !a[f] {
				fail(fmt.Errorf("%w: %s#%s", errNoAnchor, target, fragment))
			}
		}
	}
	return broken, checked, nil
}

type mdLink struct {
	line   int
	target string
}

var (
	// [text](target) or [text](target "title") or [text](<target>); also images.
	inlineLink = regexp.MustCompile(`\]\(\s*(?:<([^>]*)>|([^)\s]*))(?:\s+"[^"]*")?\s*\)`)
	// [label]: target
	referenceDef = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?([^>\s]+)>?`)
	atxHeading   = regexp.MustCompile(`^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$`)
	fence        = regexp.MustCompile("^ {0,3}(```|~~~)")
	setextLine   = regexp.MustCompile(`^ {0,3}(=+|-+)\s*$`)
	htmlTag      = regexp.MustCompile(`<[^>]+>`)
	linkText     = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	orderedItem  = regexp.MustCompile(`^\d+[.)]\s`)
)

// markdownLinks returns the links of a markdown text outside code blocks
// and code spans, with their line numbers.
func markdownLinks(text string) []mdLink {
	var links []mdLink
	inFence := false
	for i, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		line = stripCodeSpans(line)
		if m := referenceDef.FindStringSubmatch(line); m != nil {
			links = append(links, mdLink{line: i + 1, target: m[1]})
			continue
		}
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			target := m[1] + m[2]
			if target != "" {
				links = append(links, mdLink{line: i + 1, target: target})
			}
		}
	}
	return links
}

// stripCodeSpans removes `code spans` (any number of backticks) from a line.
func stripCodeSpans(line string) string {
	var b strings.Builder
	for {
		start := strings.IndexByte(line, '`')
		if start < 0 {
			b.WriteString(line)
			return b.String()
		}
		n := start
		for n < len(line) && line[n] == '`' {
			n++
		}
		ticks := line[start:n]
		end := strings.Index(line[n:], ticks)
		if end < 0 { // no closing run: literal backticks
			b.WriteString(line[:n])
			line = line[n:]
			continue
		}
		b.WriteString(line[:start])
		line = line[n+end+len(ticks):]
	}
}

func isRelative(target string) bool {
	if strings.HasPrefix(target, "//") {
		return false
	}
	if i := strings.IndexAny(target, ":/#?"); i > 0 && target[i] == ':' {
		return false // a scheme: https:, mailto:, …
	}
	return true
}

// headingAnchors returns the anchors GitHub gives the headings of a markdown
// text; a repeated heading gets -1, -2, … as on GitHub.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	add := func(heading string) {
		a := anchor(heading)
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	inFence := false
	prev := ""
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			prev = ""
			continue
		}
		if inFence {
			continue
		}
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			add(m[2])
			prev = ""
			continue
		}
		if setextLine.MatchString(line) && isParagraphLine(prev) {
			add(strings.TrimSpace(prev))
			prev = ""
			continue
		}
		prev = line
	}
	return anchors
}

// isParagraphLine reports whether a line can be the text of a setext
// heading: plain paragraph text, not a list item, table row, quote or blank.
func isParagraphLine(line string) bool {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(line, "    ") {
		return false
	}
	switch t[0] {
	case '-', '*', '+', '|', '>', '#':
		return false
	}
	return !orderedItem.MatchString(t)
}

// anchor is GitHub's anchor for a heading: its rendered text (links by
// their text, code without backticks, no emphasis or HTML), lower-cased,
// everything but letters, digits, '_', '-' and spaces removed, spaces to '-'.
func anchor(heading string) string {
	text := linkText.ReplaceAllString(heading, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "**", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
