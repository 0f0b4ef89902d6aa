package elasticsearch

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
)

// Type is the sink type name used in [[sink]] tables.
const Type = "elasticsearch"

func init() {
	conf.RegisterSinkOptions(Type, func() any { return DefaultOptions() })
	datastore.Register(Type, factory)
}

// factory builds a sink from the Options conf decoded (nil: the defaults).
func factory(name string, settings any, env datastore.Env) (datastore.Sink, error) {
	opts, err := datastore.Settings(Type, settings, DefaultOptions)
	if err != nil {
		return nil, err
	}
	// env.Log already names the sink.
	return newSink(name, opts, env.Log.With("type", Type))
}

// Options are the keys of a [[sink]] table of type "elasticsearch".
type Options struct {
	// Addresses are the base URLs of the cluster's nodes, http or https,
	// such as "https://es1:9200". Required.
	Addresses []string `toml:"addresses"`
	// Index is the index a record goes to, as a Go time layout applied to
	// the record's time in UTC: the default "mqtt-2006.01.02" makes one
	// index per day (mqtt-2024.05.01). A name without layout elements is a
	// single index.
	Index string `toml:"index"`
	// Username and Password authenticate with HTTP basic authentication.
	Username string `toml:"username"`
	Password string `toml:"password"`
	// APIKey is an encoded API key (base64 of id:key, the "encoded" value
	// Elasticsearch returns); use it or Username/Password.
	APIKey string `toml:"api_key"`
	// CAFile is a PEM file of the certificate authorities that sign the
	// cluster's certificates, for https addresses; empty uses the system's.
	CAFile string `toml:"ca_file"`
	// Template is the name of the index template Connect installs (default
	// "tide-mqtt").
	Template string `toml:"template"`
	// CreateTemplate installs (or updates) the index template at each
	// Connect (default true); turn it off to manage the template yourself.
	CreateTemplate bool `toml:"create_template"`
}

// DefaultOptions returns the options of a [[sink]] that sets only addresses.
func DefaultOptions() *Options {
	return &Options{Index: "mqtt-2006.01.02", Template: "tide-mqtt", CreateTemplate: true}
}

// Validate checks the options without doing any I/O (ca_file is read by
// Connect). Its errors name the key at fault, so that conf reports them
// with their line.
func (o *Options) Validate() error {
	var errs conf.Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &conf.Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	https := false
	if len(o.Addresses) == 0 {
		add("addresses", "missing (required): the URLs of the cluster's nodes, e.g. [\"http://localhost:9200\"]")
	}
	for i, a := range o.Addresses {
		key := fmt.Sprintf("addresses[%d]", i)
		u, err := url.Parse(a)
		switch {
		case err != nil:
			add(key, "invalid URL %q: %v", a, err)
		case u.Scheme != "http" && u.Scheme != "https":
			add(key, "%q: want an http:// or https:// URL", a)
		case u.Host == "":
			add(key, "%q: no host", a)
		case u.User != nil:
			add(key, "%q: put credentials in username and password (or api_key), not in the URL", u.Redacted())
		case u.RawQuery != "" || u.Fragment != "":
			add(key, "%q: no query or fragment allowed", a)
		}
		if err == nil && u.Scheme == "https" {
			https = true
		}
	}
	if _, err := newIndexer(o.Index, o.CreateTemplate); err != nil {
		add("index", "%v", err)
	}
	switch {
	case o.APIKey != "" && (o.Username != "" || o.Password != ""):
		add("api_key", "set either api_key or username and password, not both")
	case o.Username != "" && o.Password == "":
		add("password", "missing: username is set")
	case o.Password != "" && o.Username == "":
		add("username", "missing: password is set")
	}
	if o.CAFile != "" && len(o.Addresses) > 0 && !https {
		add("ca_file", "set, but no address uses https")
	}
	if o.CreateTemplate {
		if err := checkName(o.Template); err != nil {
			add("template", "%v", err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkName applies Elasticsearch's rules for index and template names, so
// that a bad name fails `tide check` instead of every write.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("must not be empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid name", name)
	case len(name) > 255:
		return fmt.Errorf("%q is longer than 255 bytes", name)
	case strings.ToLower(name) != name:
		return fmt.Errorf("%q must be lower case", name)
	case strings.ContainsAny(name[:1], "_-+."):
		return fmt.Errorf("%q must not start with '_', '-', '+' or '.'", name)
	}
	if i := strings.IndexAny(name, "\\/*?\"<>| ,#:"); i >= 0 {
		return fmt.Errorf("%q must not contain %q", name, name[i])
	}
	return nil
}

// indexer names the index of a record's time and the pattern matching all
// of them.
type indexer struct {
	layout string
	// pattern matches every name layout can produce: the constant prefix
	// and suffix around a *, or the name itself when it has no layout
	// elements.
	pattern string
	daily   bool // the name changes with the time
}

// Two times whose formatted layout elements differ in their first and in
// their last character, padded or not (month "3"/"03" and "12", day "4" and
// "28", day of year "063" and "362", hour "05"/"5" and "23"/"11", ...), so
// that the common prefix and suffix of two formatted names is exactly the
// constant part of the layout.
var (
	probeA = time.Date(2111, time.March, 4, 5, 6, 7, 111111111, time.UTC)
	probeB = time.Date(3999, time.December, 28, 23, 58, 59, 999999999, time.UTC)
)

func newIndexer(layout string, needPattern bool) (*indexer, error) {
	if layout == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	a, b := probeA.Format(layout), probeB.Format(layout)
	for _, name := range []string{a, b} {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%q makes index names such as %q, which Elasticsearch refuses: %v", layout, name, err)
		}
	}
	ix := &indexer{layout: layout, pattern: a}
	if a != b {
		ix.daily = true
		p := commonPrefix(a, b)
		s := commonSuffix(a[len(p):], b[len(p):])
		ix.pattern = p + "*" + s
		if needPattern && ix.pattern == "*" {
			return nil, fmt.Errorf("%q has no constant part, so its index template would match every index; add a prefix such as \"mqtt-\"", layout)
		}
	}
	return ix, nil
}

func (ix *indexer) name(t time.Time) string {
	if !ix.daily {
		return ix.pattern
	}
	return t.UTC().Format(ix.layout)
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}

func commonSuffix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return a[len(a)-n:]
}
