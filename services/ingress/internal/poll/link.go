package poll

import (
	"net/url"
	"strings"
)

// NextLink returns the target of the rel="next" link in Link header values
// (RFC 8288, formerly RFC 5988), resolved against base; "" when there is
// none. Partners' headers are untrusted: anything malformed is skipped.
func NextLink(values []string, base *url.URL) string {
	for _, v := range values {
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				// Not a link-value: skip to the next comma.
				if i := strings.IndexByte(v, ','); i >= 0 {
					v = v[i+1:]
					continue
				}
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			params, rest := linkParams(v)
			v = rest
			for _, rel := range strings.Fields(params["rel"]) {
				if strings.EqualFold(rel, "next") {
					u, err := base.Parse(strings.TrimSpace(target))
					if err != nil {
						break
					}
					return u.String()
				}
			}
		}
	}
	return ""
}

// linkParams reads ;name=value parameters up to the comma that ends a
// link-value, honouring quoted strings.
func linkParams(s string) (map[string]string, string) {
	params := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ";") {
			break
		}
		s = strings.TrimLeft(s[1:], " \t")
		i := strings.IndexAny(s, "=;,")
		if i < 0 {
			params[strings.ToLower(strings.TrimSpace(s))] = ""
			return params, ""
		}
		name := strings.ToLower(strings.TrimSpace(s[:i]))
		if s[i] != '=' {
			params[name] = ""
			s = s[i:]
			continue
		}
		s = strings.TrimLeft(s[i+1:], " \t")
		var value string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			value = b.String()
			s = s[min(j+1, len(s)):]
		} else {
			j := strings.IndexAny(s, ";,")
			if j < 0 {
				j = len(s)
			}
			value = strings.TrimSpace(s[:j])
			s = s[j:]
		}
		if _, seen := params[name]; !seen {
			params[name] = value
		}
	}
	return params, s
}

// sameOrigin reports whether u has a's scheme and host: a next-page link
// elsewhere would carry the source's credentials to another server.
func sameOrigin(a *url.URL, u string) bool {
	b, err := url.Parse(u)
	return err == nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}
