package crypto

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/crypto/bcrypt"
)

func run(t *testing.T, src string, args ...lua.LValue) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule(Name, Loader)
	fn, err := L.LoadString(`local crypto = require("crypto") local a, b = ... ` + src)
	if err != nil {
		t.Fatal(err)
	}
	top := L.GetTop()
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	if err := L.PCall(len(args), lua.MultRet, nil); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " ")
}

func TestHashes(t *testing.T) {
	cases := []struct{ src, want string }{
		{`return crypto.sha256("abc")`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		// RFC 4231 test case 2.
		{`return crypto.hmac_sha256("Jefe", "what do ya want for nothing?")`, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{`return crypto.constant_time_eq("abc", "abc"), crypto.constant_time_eq("abc", "abd"), crypto.constant_time_eq("a", "ab")`, "true false false"},
		{`return crypto.hex_encode("\0\255"), crypto.hex_decode("00ff") == "\0\255"`, "00ff true"},
		{`return crypto.base64_encode("hi?"), crypto.base64_decode("aGk/")`, "aGk/ hi?"},
		{`return crypto.base64url_encode("hi?"), crypto.base64url_decode("aGk_")`, "aGk_ hi?"},
		{`return crypto.hex_decode("zz")`, "nil crypto.hex_decode: encoding/hex: invalid byte: U+007A 'z'"},
		{`local v, err = crypto.base64_decode("!!") return v, err ~= nil`, "nil true"},
	}
	for _, tc := range cases {
		if got := run(t, tc.src); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestBcryptVerify(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	src := `return crypto.bcrypt_verify(a, b)`
	if got := run(t, src, lua.LString(hash), lua.LString("s3cret")); got != "true" {
		t.Errorf("right password: %s, want true", got)
	}
	if got := run(t, src, lua.LString(hash), lua.LString("wrong")); got != "false" {
		t.Errorf("wrong password: %s, want false", got)
	}
	if got := run(t, src, lua.LString("not a hash"), lua.LString("s3cret")); got != "false" {
		t.Errorf("malformed hash: %s, want false", got)
	}
}

func TestRandom(t *testing.T) {
	if got := run(t, `local a, b = crypto.random(16), crypto.random(16) return #a, #b, a ~= b, #crypto.random(1024)`); got != "16 16 true 1024" {
		t.Errorf("random: %s, want 16 16 true 1024", got)
	}
	for _, n := range []string{"0", "1025", "-1"} {
		L := lua.NewState()
		L.PreloadModule(Name, Loader)
		err := L.DoString(`require("crypto").random(` + n + `)`)
		L.Close()
		if err == nil || !strings.Contains(err.Error(), "want 1 to 1024 bytes") {
			t.Errorf("random(%s): %v, want an argument error", n, err)
		}
	}
}
