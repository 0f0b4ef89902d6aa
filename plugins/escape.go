package plugins

import (
	lua "github.com/yuin/gopher-lua"
)

// The decoding of gopher-lua's instructions (opcode.go in gopher-lua, which
// keeps these helpers unexported): opcode in the top 6 bits, then A (8
// bits), C (9 bits) and B (9 bits); a B or C with bit 8 set names a
// constant, not a register.
func opCode(i uint32) int { return int(i >> 26) }
func argA(i uint32) int   { return int(i>>18) & 0xff }
func argB(i uint32) int   { return int(i & 0x1ff) }
func argC(i uint32) int   { return int(i>>9) & 0x1ff }

const rkConstant = 1 << 8

// paramEscapes reports whether the parameter in register reg of fn may
// outlive the call or be changed by it: stored (in a global, an upvalue, a
// table), captured by a closure, passed to a function, returned, mutated,
// or reached through varargs. It answers true for anything it does not
// recognise. When it answers false, the only uses of the parameter are
// reads of its fields (msg.topic) and truth tests, so the runtime may hand
// the same table to every call of that VM, refilled each time, instead of
// building one per call: on_publish's message table is most of a hook's
// cost.
func paramEscapes(fn *lua.LFunction, reg int) bool {
	p := fn.Proto
	if p == nil || p.IsVarArg&lua.VarArgIsVarArg != 0 || int(p.NumParameters) <= reg {
		return true
	}
	isReg := func(rk int) bool { return rk&rkConstant == 0 && rk == reg }
	// covers reports whether the registers from..from+n-1 (n < 0: to the
	// top of the stack) include reg.
	covers := func(from, n int) bool { return reg >= from && (n < 0 || reg < from+n) }
	for _, inst := range p.Code {
		a, b, c := argA(inst), argB(inst), argC(inst)
		switch opCode(inst) {
		case lua.OP_LOADK, lua.OP_LOADBOOL, lua.OP_LOADNIL, lua.OP_GETUPVAL, lua.OP_GETGLOBAL,
			lua.OP_NEWTABLE, lua.OP_JMP, lua.OP_CLOSE, lua.OP_VARARG, lua.OP_NOP, lua.OP_CLOSURE:
			// These read no register. A closure's captures follow it as
			// MOVE pseudo-instructions, checked below.
		case lua.OP_MOVE, lua.OP_MOVEN, lua.OP_UNM, lua.OP_NOT, lua.OP_LEN:
			if b == reg {
				return true
			}
		case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
			// Reading a field of the parameter is the use this allows.
			if isReg(c) {
				return true
			}
		case lua.OP_SELF:
			// msg:method() passes msg itself.
			if b == reg || isReg(c) {
				return true
			}
		case lua.OP_SETGLOBAL, lua.OP_SETUPVAL:
			if a == reg {
				return true
			}
		case lua.OP_SETTABLE, lua.OP_SETTABLEKS:
			if a == reg || isReg(b) || isReg(c) {
				return true
			}
		case lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW,
			lua.OP_EQ, lua.OP_LT, lua.OP_LE:
			if isReg(b) || isReg(c) {
				return true
			}
		case lua.OP_CONCAT:
			if reg >= b && reg <= c {
				return true
			}
		case lua.OP_TEST:
			// "if msg then": a truth test keeps nothing.
		case lua.OP_TESTSET:
			if b == reg {
				return true
			}
		case lua.OP_CALL, lua.OP_TAILCALL:
			if covers(a, b) && b != 0 || b == 0 && reg >= a {
				return true
			}
		case lua.OP_RETURN:
			if b == 0 && reg >= a || b > 0 && covers(a, b-1) {
				return true
			}
		case lua.OP_FORLOOP, lua.OP_FORPREP, lua.OP_TFORLOOP:
			if covers(a, 3) {
				return true
			}
		case lua.OP_SETLIST:
			if b == 0 && reg >= a || covers(a, b+1) {
				return true
			}
		default:
			return true
		}
	}
	return false
}
