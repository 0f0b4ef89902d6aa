// Package sandbox is the Lua environment shared by Tide's plugins and
// scheduler jobs: a state with the safe standard libraries and bounded
// stacks, compiled scripts whose prototypes every VM shares, and the
// globals (require, dofile, loadfile, readfile, print) confined to the
// script's folder. Both runtimes build their states here, so a script
// sees the same language and limits whether it is a plugin or a job; only
// the modules offered to require differ.
//
//	s, err := sandbox.Load("scripts/acl.lua")           // compile once
//	env := &sandbox.Env{Script: s, Kind: "plugin", Modules: mods, Names: names, Print: logmod.Print}
//	L := sandbox.NewState()                              // per VM
//	env.Install(L)
//	L.Push(L.NewFunctionFromProto(s.Proto)); err = L.PCall(0, 0, nil)
package sandbox
