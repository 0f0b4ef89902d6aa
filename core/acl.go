package core

import "github.com/tidemq/tide/core/acl"

// SetACL installs the ACL file's rules (Mosquitto's acl_file; see
// core/acl); nil removes them. It may be called while serving (a reload):
// every session's rules are made anew, so the next message is checked
// against the new file.
func (s *Server) SetACL(f *acl.File) {
	s.aclFile.Store(f)
	s.sessions.Range(func(_, v any) bool {
		ss := v.(*session)
		ss.mu.Lock()
		ss.acl.Store(s.rulesFor(ss.id, ss.username))
		ss.mu.Unlock()
		return true
	})
}

// rulesFor is a client's rules, nil without an ACL file.
func (s *Server) rulesFor(clientID, username string) *acl.Rules {
	f := s.aclFile.Load()
	if f == nil {
		return nil
	}
	return f.For(clientID, username)
}

// mayRead reports whether the session's rules let it receive a message on
// name (always, without an ACL file).
func (ss *session) mayRead(name string) bool {
	r := ss.acl.Load()
	return r == nil || r.Allowed(name, false)
}
