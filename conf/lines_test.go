package conf

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestIndexLines(t *testing.T) {
	src := `top = 1 # a = 2
[log]
level = "info"

[[listener]]
type = "tcp"
[listener.tls]
cert_file = "a"
[[listener]]
  address = ":1" # comment
  "quoted.key" = 1
[listener.tls]
key_file = """
not = "a key"
"""
[[plugin]]
name = "a"
[plugin.settings]
nested.deep = 1
list = [
  1,
  { x = 2 },
]
[[plugin]]
name = 'b'
inline = { a = 1, b = [2, 3] }
[[plugin.hook]]
on = "x"
[[plugin.hook]]
on = "y"
[ alert . "web hook" ]
url = '''
x
'''
after = 1
`
	want := map[string]int{
		"top":                            1,
		"log":                            2,
		"log.level":                      3,
		"listener":                       5,
		"listener[0]":                    5,
		"listener[0].type":               6,
		"listener[0].tls":                7,
		"listener[0].tls.cert_file":      8,
		"listener[1]":                    9,
		"listener[1].address":            10,
		`listener[1]."quoted.key"`:       11,
		"listener[1].tls":                12,
		"listener[1].tls.key_file":       13,
		"plugin[0]":                      16,
		"plugin[0].name":                 17,
		"plugin[0].settings":             18,
		"plugin[0].settings.nested":      19,
		"plugin[0].settings.nested.deep": 19,
		"plugin[0].settings.list":        20,
		"plugin[0].settings.list[0]":     21,
		"plugin[0].settings.list[1]":     22,
		"plugin[0].settings.list[1].x":   22,
		"plugin[1]":                      24,
		"plugin[1].name":                 25,
		"plugin[1].inline.a":             26,
		"plugin[1].inline.b[1]":          26,
		"plugin[1].hook":                 27,
		"plugin[1].hook[0].on":           28,
		"plugin[1].hook[1]":              29,
		"plugin[1].hook[1].on":           30,
		"alert":                          31,
		`alert."web hook".url`:           32,
		`alert."web hook".after`:         35,
	}
	if _, err := toml.Decode(src, new(map[string]any)); err != nil {
		t.Fatalf("test input is not valid TOML: %v", err)
	}
	ix := indexLines(src)
	for path, line := range want {
		if got := ix[path]; got != line {
			t.Errorf("line of %s = %d, want %d", path, got, line)
		}
	}
	for _, bad := range []string{"a", "not", "listener[1].tls.not", "x"} {
		if n, ok := ix[bad]; ok {
			t.Errorf("%s indexed at line %d, want absent", bad, n)
		}
	}
	// Missing keys fall back to their nearest written ancestor.
	fallback := map[string]int{
		"listener[1].tls.ca_file":  12,
		"listener[1].name":         9,
		"plugin[1].hook[1].x.y[3]": 29,
		`alert."web hook".x`:       31,
		"nothing.here":             0,
	}
	for path, line := range fallback {
		if got := ix.line(path); got != line {
			t.Errorf("line(%s) = %d, want %d", path, got, line)
		}
	}
}

func TestParentKey(t *testing.T) {
	tests := map[string]string{
		"a":                    "",
		"a.b":                  "a",
		"a[1]":                 "a",
		"a[1].b":               "a[1]",
		`a."b.c"`:              "a",
		`a."b\".[c"[2]`:        `a."b\".[c"`,
		`plugin[0].settings.x`: "plugin[0].settings",
	}
	for in, want := range tests {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%s) = %s, want %s", in, got, want)
		}
	}
}
