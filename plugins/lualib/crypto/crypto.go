// Package crypto is the Lua module "crypto": hashes, MACs, password checks
// and encodings for authentication scripts.
//
//	local crypto = require("crypto")
//	crypto.sha256("abc")                  -- hex digest
//	crypto.hmac_sha256(key, message)      -- hex MAC
//	crypto.bcrypt_verify(hash, password)  -- true or false
//	crypto.constant_time_eq(a, b)         -- compares secrets without leaking timing
//	crypto.random(n)                      -- n random bytes (1 to 1024), for nonces and salts
//	crypto.hex_encode(s), crypto.hex_decode(s)
//	crypto.base64_encode(s), crypto.base64_decode(s)  -- standard alphabet, padded
//	crypto.base64url_encode(s), crypto.base64url_decode(s)  -- URL alphabet, unpadded
//
// Decoders return nil plus a message on bad input.
package crypto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "crypto"

// Loader is the lua.LGFunction that require calls: it pushes the module.
func Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"sha256":           sha256Hex,
		"hmac_sha256":      hmacSHA256,
		"bcrypt_verify":    bcryptVerify,
		"constant_time_eq": constantTimeEq,
		"random":           random,
		"hex_encode":       encoder(hex.EncodeToString),
		"hex_decode":       decoder("hex", hex.DecodeString),
		"base64_encode":    encoder(base64.StdEncoding.EncodeToString),
		"base64_decode":    decoder("base64", base64.StdEncoding.DecodeString),
		"base64url_encode": encoder(base64.RawURLEncoding.EncodeToString),
		"base64url_decode": decoder("base64url", base64.RawURLEncoding.DecodeString),
	})
	L.Push(mod)
	return 1
}

func sha256Hex(L *lua.LState) int {
	sum := sha256.Sum256([]byte(L.CheckString(1)))
	L.Push(lua.LString(hex.EncodeToString(sum[:])))
	return 1
}

func hmacSHA256(L *lua.LState) int {
	mac := hmac.New(sha256.New, []byte(L.CheckString(1)))
	mac.Write([]byte(L.CheckString(2)))
	L.Push(lua.LString(hex.EncodeToString(mac.Sum(nil))))
	return 1
}

// bcryptVerify answers false for a malformed hash as well as for a wrong
// password: to the caller both mean "not this password", and the hash
// comes from the operator's own user list.
func bcryptVerify(L *lua.LState) int {
	hash, password := L.CheckString(1), L.CheckString(2)
	L.Push(lua.LBool(bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil))
	return 1
}

func constantTimeEq(L *lua.LState) int {
	a, b := L.CheckString(1), L.CheckString(2)
	L.Push(lua.LBool(subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1))
	return 1
}

// maxRandom bounds crypto.random: nonces and salts, not bulk data.
const maxRandom = 1024

func random(L *lua.LState) int {
	n := L.CheckInt(1)
	if n < 1 || n > maxRandom {
		L.ArgError(1, fmt.Sprintf("want 1 to %d bytes, got %d", maxRandom, n))
	}
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	L.Push(lua.LString(b))
	return 1
}

func encoder(enc func([]byte) string) lua.LGFunction {
	return func(L *lua.LState) int {
		L.Push(lua.LString(enc([]byte(L.CheckString(1)))))
		return 1
	}
}

func decoder(name string, dec func(string) ([]byte, error)) lua.LGFunction {
	return func(L *lua.LState) int {
		b, err := dec(L.CheckString(1))
		if err != nil {
			return luaconv.Fail(L, fmt.Errorf("crypto.%s_decode: %w", name, err))
		}
		L.Push(lua.LString(b))
		return 1
	}
}
