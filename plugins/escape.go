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

// msgField is a field of on_publish's message table, as a bit.
type msgField uint8

const (
	fieldTopic msgField = 1 << iota
	fieldPayload
	fieldQoS
	fieldRetain
	fieldTime
	fieldProperties
	allFields msgField = 1<<iota - 1
)

var msgFields = map[string]msgField{"topic": fieldTopic, "payload": fieldPayload, "qos": fieldQoS,
	"retain": fieldRetain, "time": fieldTime, "properties": fieldProperties}

// paramUse is what a function does with one of its table parameters.
type paramUse struct {
	// escapes: the table may outlive the call or be changed by it.
	escapes bool
	// fields are the message fields the function may read: every field
	// when it indexes the table with a key computed at run time.
	fields msgField
}

// needs reports whether the function may read field f.
func (u paramUse) needs(f msgField) bool { return u.escapes || u.fields&f != 0 }

// analyzeParam finds out from fn's bytecode what it does with the table
// parameter in register reg. The parameter escapes if it may be stored (in
// a global, an upvalue, a table), captured by a closure, passed to a
// function, returned, mutated, or reached through varargs; anything the
// analysis does not recognise counts as an escape. A parameter that does
// not escape is only read (msg.topic) and truth-tested, so the runtime may
// hand the same table to every call of that VM, refilled each time, with
// only the fields the function reads: on_publish's message table is most of
// a hook's cost, and the payload need not even become a Lua string when no
// one reads it.
func analyzeParam(fn *lua.LFunction, reg int) paramUse {
	escape := paramUse{escapes: true, fields: allFields}
	p := fn.Proto
	if p == nil || p.IsVarArg&lua.VarArgIsVarArg != 0 || int(p.NumParameters) <= reg {
		return escape
	}
	var use paramUse
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
				return escape
			}
		case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
			// Reading a field of the parameter is the use this allows.
			if isReg(c) {
				return escape
			}
			if b == reg {
				if c&rkConstant == 0 {
					use.fields = allFields // msg[k]: any field
				} else if k, ok := p.Constants[c&^rkConstant].(lua.LString); ok {
					use.fields |= msgFields[string(k)]
				}
			}
		case lua.OP_SELF:
			// msg:method() passes msg itself.
			if b == reg || isReg(c) {
				return escape
			}
		case lua.OP_SETGLOBAL, lua.OP_SETUPVAL:
			if a == reg {
				return escape
			}
		case lua.OP_SETTABLE, lua.OP_SETTABLEKS:
			if a == reg || isReg(b) || isReg(c) {
				return escape
			}
		case lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW,
			lua.OP_EQ, lua.OP_LT, lua.OP_LE:
			if isReg(b) || isReg(c) {
				return escape
			}
		case lua.OP_CONCAT:
			if reg >= b && reg <= c {
				return escape
			}
		case lua.OP_TEST:
			// "if msg then": a truth test keeps nothing.
		case lua.OP_TESTSET:
			if b == reg {
				return escape
			}
		case lua.OP_CALL, lua.OP_TAILCALL:
			if covers(a, b) && b != 0 || b == 0 && reg >= a {
				return escape
			}
		case lua.OP_RETURN:
			if b == 0 && reg >= a || b > 0 && covers(a, b-1) {
				return escape
			}
		case lua.OP_FORLOOP, lua.OP_FORPREP, lua.OP_TFORLOOP:
			if covers(a, 3) {
				return escape
			}
		case lua.OP_SETLIST:
			if b == 0 && reg >= a || covers(a, b+1) {
				return escape
			}
		default:
			return escape
		}
	}
	return use
}
