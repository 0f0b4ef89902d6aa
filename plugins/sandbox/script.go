package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// maxScriptBytes bounds a script or module file: it is compiled in memory.
const maxScriptBytes = 16 << 20

// Script is a compiled script: its Proto is shared by every state that
// runs it, so each state only instantiates it.
type Script struct {
	// Path is the file as configured; it names the chunk, so that error
	// messages say "scripts/auth.lua:12: ...".
	Path string
	// Dir is the script's folder, absolute with symlinks resolved: the
	// only place require, dofile, loadfile and readfile may read from.
	Dir string
	// Proto is the compiled main chunk.
	Proto *lua.FunctionProto
	// Source is the file's contents, so that a reload can tell whether
	// the script changed.
	Source []byte

	// modules are the .lua files required by the script, compiled once
	// (by real path) and shared by the states.
	mu      sync.Mutex
	modules map[string]*lua.FunctionProto
}

// Load reads and compiles a script. Its errors name the file and, for
// syntax errors, the line and column.
func Load(path string) (*Script, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, unwrapPathError(err))
	}
	src, err := readScript(real, path)
	if err != nil {
		return nil, err
	}
	proto, err := Compile(src, path)
	if err != nil {
		return nil, err
	}
	return &Script{Path: path, Dir: filepath.Dir(real), Proto: proto, Source: src, modules: map[string]*lua.FunctionProto{}}, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readScript reads the file at real, naming it name in errors.
func readScript(real, name string) ([]byte, error) {
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", name, unwrapPathError(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("script %s: not a regular file", name)
	}
	if st.Size() > maxScriptBytes {
		return nil, fmt.Errorf("script %s: %d bytes, more than the limit of %d", name, st.Size(), maxScriptBytes)
	}
	src, err := os.ReadFile(real)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", name, unwrapPathError(err))
	}
	return src, nil
}

// Compile compiles Lua source under the chunk name name. A syntax error
// reads "name:line:column: message near 'token'".
func Compile(src []byte, name string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			if pe.Pos.Line == parse.EOF {
				return nil, fmt.Errorf("%s: at end of file: %s", name, pe.Message)
			}
			return nil, fmt.Errorf("%s:%d:%d: %s near '%s'", name, pe.Pos.Line, pe.Pos.Column, pe.Message, pe.Token)
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimSpace(err.Error()))
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%s:%d: %s", name, ce.Line, ce.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return proto, nil
}

// Resolve maps a path given by a script (relative to its folder) to a real
// file inside the folder, refusing absolute paths, paths with "..", and
// symlinks that lead elsewhere.
func (s *Script) Resolve(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty path")
	}
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("%q: absolute paths are not allowed: give a path relative to the script's folder", name)
	}
	p := filepath.Join(s.Dir, name)
	if !inside(s.Dir, p) {
		return "", fmt.Errorf("%q is outside the script's folder", name)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%q: %w", name, unwrapPathError(err))
	}
	if !inside(s.Dir, real) {
		return "", fmt.Errorf("%q leads outside the script's folder", name)
	}
	return real, nil
}

func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// Module returns the compiled proto of a file in the script's folder
// (real, from Resolve), compiling it on first use. display names it in
// messages.
func (s *Script) Module(real, display string) (*lua.FunctionProto, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.modules[real]; ok {
		return p, nil
	}
	src, err := readScript(real, display)
	if err != nil {
		return nil, err
	}
	p, err := Compile(src, display)
	if err != nil {
		return nil, err
	}
	if s.modules == nil {
		s.modules = map[string]*lua.FunctionProto{}
	}
	s.modules[real] = p
	return p, nil
}
