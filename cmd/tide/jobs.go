package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/scheduler"
)

// jobsFlags are the options of `tide jobs`.
type jobsFlags struct {
	admin    string // host:port of the admin API
	mqtt     string // host:port of an MQTT listener
	user     string
	password string
	json     bool
}

// jobs prints the status of a running broker's jobs. It asks the admin
// API when there is one (fresh figures, with the schedules), and otherwise
// reads the retained $SYS/broker/jobs/# values over MQTT from the config's
// first TCP listener (figures as of the last $SYS update).
func jobs(cfg *conf.Config, f jobsFlags, stdout io.Writer) error {
	var (
		list   []scheduler.JobStatus
		source string
		err    error
	)
	admin := f.admin
	if admin == "" && f.mqtt == "" {
		admin = cfg.Admin.Address
	}
	if admin != "" {
		source = "admin API at " + admin
		list, err = jobsFromAdmin(admin, cfg.Admin)
	} else {
		addr := f.mqtt
		if addr == "" {
			if addr, err = firstTCPListener(cfg); err != nil {
				return err
			}
		}
		source = "$SYS over MQTT at " + addr
		list, err = jobsFromSys(addr, f.user, f.password)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no jobs (%s)\n", source)
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "JOB\tSCHEDULE\tRUNS\tFAILED\tTIMEOUTS\tSKIPPED\tLAST RUN\tDURATION\tOUTCOME\tNEXT RUN\tERROR")
	for _, j := range list {
		sched := j.Schedule
		if sched == "" {
			sched = "-"
		}
		outcome := j.LastOutcome
		if j.Running {
			outcome = "running"
		}
		if outcome == "" {
			outcome = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%.3fs\t%s\t%s\t%s\n", j.Name, sched, j.Runs, j.Failures, j.Timeouts,
			j.Skipped, when(j.LastRun), j.LastDurationSeconds, outcome, when(j.NextRun), firstLine(j.LastError+j.ReloadError))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "(from the %s)\n", source)
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if s == "" {
		return "-"
	}
	return s
}

// jobsFromAdmin reads GET /api/jobs with the config's credentials.
func jobsFromAdmin(addr string, a conf.Admin) ([]scheduler.JobStatus, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + loopback(addr)
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(addr, "/")+"/api/jobs", nil)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Token != "":
		req.Header.Set("Authorization", "Bearer "+a.Token)
	case a.Username != "":
		req.SetBasicAuth(a.Username, a.Password)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the broker running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	var list []scheduler.JobStatus
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("unexpected answer: %w", err)
	}
	return list, nil
}

// firstTCPListener is where `tide jobs` reaches the broker over MQTT.
func firstTCPListener(cfg *conf.Config) (string, error) {
	for _, l := range cfg.Listeners {
		if l.Type == "tcp" || l.Type == "" {
			return loopback(l.Address), nil
		}
	}
	return "", errors.New("tide jobs: the config has neither an [admin] address nor a tcp listener; give -admin or -mqtt")
}

// loopback turns a wildcard listen address into one a client can dial.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// jobsFromSys subscribes to $SYS/broker/jobs/# and collects the retained
// values until the broker has been quiet for a moment.
func jobsFromSys(addr, user, password string) ([]scheduler.JobStatus, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("is the broker running? %w", err)
	}
	defer conn.Close()
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	c := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, CleanStart: true, KeepAlive: 30,
		ClientID: "tide-jobs-" + hex.EncodeToString(id)}
	if user != "" {
		c.UsernameFlag, c.Username = true, user
		c.PasswordFlag, c.Password = true, []byte(password)
	}
	sub := &packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "$SYS/broker/jobs/#"}}}
	if _, err := conn.Write(append(packet.Encode(c, packet.V311), packet.Encode(sub, packet.V311)...)); err != nil {
		return nil, err
	}
	r := packet.NewReader(conn)
	r.Version = packet.V311
	byName := map[string]*scheduler.JobStatus{}
	var order []string
	deadline := time.Now().Add(10 * time.Second)
	subscribed := false
	for {
		// After the SUBACK the retained values follow at once; a quiet
		// moment means they are all here.
		wait := 5 * time.Second
		if subscribed {
			wait = 300 * time.Millisecond
		}
		_ = conn.SetReadDeadline(minTime(time.Now().Add(wait), deadline))
		p, _, err := r.ReadPacket()
		if err != nil {
			var ne net.Error
			if subscribed && errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return nil, err
		}
		switch p := p.(type) {
		case *packet.Connack:
			if p.ReasonCode != 0 {
				return nil, fmt.Errorf("connection refused: %v (give -u and -P)", p.ReasonCode)
			}
		case *packet.Suback:
			if len(p.Codes) != 1 || p.Codes[0] >= 0x80 {
				return nil, fmt.Errorf("subscription to $SYS/broker/jobs/# refused: %v", p.Codes)
			}
			subscribed = true
		case *packet.Publish:
			rest, ok := strings.CutPrefix(p.Topic, "$SYS/broker/jobs/")
			name, field, ok2 := strings.Cut(rest, "/")
			if !ok || !ok2 {
				continue
			}
			j := byName[name]
			if j == nil {
				j = &scheduler.JobStatus{Name: name}
				byName[name] = j
				order = append(order, name)
			}
			setSysField(j, field, string(p.Payload))
		}
	}
	sort.Strings(order)
	out := make([]scheduler.JobStatus, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// setSysField reads one $SYS/broker/jobs/<name>/<field> value (the names
// of Scheduler.SysValues).
func setSysField(j *scheduler.JobStatus, field, v string) {
	u := func() uint64 { n, _ := strconv.ParseUint(v, 10, 64); return n }
	t := func() time.Time { tm, _ := time.Parse(time.RFC3339, v); return tm }
	switch field {
	case "runs":
		j.Runs = u()
	case "failures":
		j.Failures = u()
	case "timeouts":
		j.Timeouts = u()
	case "skipped":
		j.Skipped = u()
	case "last_run":
		j.LastRun = t()
	case "next_run":
		j.NextRun = t()
	case "last_duration":
		j.LastDurationSeconds, _ = strconv.ParseFloat(v, 64)
	case "last_outcome":
		j.LastOutcome = v
	case "last_error":
		j.LastError = v
	}
}
