package conf

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary text to Parse. Whatever it is given, Parse
// must not panic or hang, and a refusal must be an Errors whose every entry
// names the file and says what is wrong: a user editing tide.toml always
// learns where the problem is.
//
// Run: go test -run x -fuzz FuzzParse ./conf/ (new corpus entries land in
// testdata/fuzz/FuzzParse; commit the interesting ones).
func FuzzParse(f *testing.F) {
	f.Add(defaultFile)
	for _, s := range []string{
		"[mqtt]\nmax_inflight = 10\nmax_packet_size = \"64KB\"\nstall_timeout = \"1.5s\"\n",
		"[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:8883\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nmin_version = \"1.3\"\n",
		"[[listener]]\ntype = \"ws\"\naddress = \":8080\"\npath = \"/mqtt\"\nallowed_origins = [\"https://a\"]\n",
		"[auth]\n[[auth.user]]\nusername = \"u\"\npassword_hash = \"$2a$10$abc\"\n",
		"[[plugin]]\nname = \"p\"\nscript = \"a.lua\"\ntimeout = \"50ms\"\npool = 4\nfail = \"deny\"\n[plugin.settings]\nx = 1\n",
		"[[sink]]\nname = \"s\"\ntype = \"fake\"\nurl = \"u\"\ntags = [\"a\"]\n[[route]]\ntopics = [\"a/#\"]\nsinks = [\"s\"]\n",
		"[[job]]\nname = \"j\"\nscript = \"j.lua\"\ncron = \"*/5 * * * *\"\n[[job]]\nname = \"k\"\nscript = \"k.lua\"\nevery = \"1m\"\n",
		"[[aggregate]]\nname = \"t\"\ntopics = [\"home/+/temp\"]\nvalue = \"temp\"\nwindows = [\"5m\", \"10m\"]\n",
		"[alert]\ntopic_prefix = \"x\"\n[alert.webhook]\nurl = \"http://h\"\nretries = 2\n",
		"[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"t\"\n",
		"x = = 1",
		"[log]\nlevel = \"loud\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.toml", data)
		if err == nil {
			return
		}
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("Parse error is %T, want Errors: %v", err, err)
		}
		if len(es) == 0 {
			t.Fatal("Parse failed with an empty Errors")
		}
		for _, e := range es {
			if e.File != "fuzz.toml" || e.Msg == "" {
				t.Fatalf("error without its file or its message: %+v", e)
			}
		}
	})
}
