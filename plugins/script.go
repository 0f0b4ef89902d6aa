package plugins

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

	"github.com/tidemq/tide/conf"
)

// maxScriptBytes bounds a script or module file: it is compiled in memory.
const maxScriptBytes = 16 << 20

// script is a compiled plugin script: the proto is shared by every VM of
// the plugin, so each VM only instantiates it.
type script struct {
	// path is the file as configured; it names the chunk, so that error
	// messages say "scripts/auth.lua:12: ...".
	path string
	// dir is the script's folder, absolute with symlinks resolved: the
	// only place require, dofile, loadfile and readfile may read from.
	dir   string
	proto *lua.FunctionProto

	// modules are the .lua files required by the script, compiled once
	// (by real path) and shared by the VMs.
	mu      sync.Mutex
	modules map[string]*lua.FunctionProto
}

// loadScript reads and compiles a plugin's script. Its errors name the file
// and, for syntax errors, the line and column.
func loadScript(path string) (*script, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, unwrapPathError(err))
	}
	proto, err := compileFile(real, path)
	if err != nil {
		return nil, err
	}
	return &script{path: path, dir: filepath.Dir(real), proto: proto, modules: map[string]*lua.FunctionProto{}}, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// compileFile compiles the file at real, naming the chunk name.
func compileFile(real, name string) (*lua.FunctionProto, error) {
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
	return compileSource(src, name)
}

// compileSource compiles Lua source. A syntax error reads
// "name:line:column: message near 'token'".
func compileSource(src []byte, name string) (*lua.FunctionProto, error) {
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

// resolve maps a path given by a script (relative to its folder) to a real
// file inside the folder, refusing absolute paths, paths with "..", and
// symlinks that lead elsewhere.
func (s *script) resolve(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty path")
	}
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("%q: absolute paths are not allowed: give a path relative to the script's folder", name)
	}
	p := filepath.Join(s.dir, name)
	if !inside(s.dir, p) {
		return "", fmt.Errorf("%q is outside the script's folder", name)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%q: %w", name, unwrapPathError(err))
	}
	if !inside(s.dir, real) {
		return "", fmt.Errorf("%q leads outside the script's folder", name)
	}
	return real, nil
}

func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// module returns the compiled proto of a file in the script's folder,
// compiling it on first use. display names it in messages.
func (s *script) module(real, display string) (*lua.FunctionProto, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.modules[real]; ok {
		return p, nil
	}
	p, err := compileFile(real, display)
	if err != nil {
		return nil, err
	}
	s.modules[real] = p
	return p, nil
}

// Check compiles every configured script, as `tide check` does, without
// running any of them: it reports every missing file and syntax error at
// once (joined), each with its file and line.
func Check(cfgs []conf.Plugin) error {
	var errs []error
	for i, c := range cfgs {
		cfg, err := normalize(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin[%d]: %w", i, err))
			continue
		}
		if _, err := loadScript(cfg.Script); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}
