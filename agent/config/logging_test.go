package config

import (
	"strings"
	"testing"
)

func TestLoggingRejections(t *testing.T) {
	for _, tc := range []struct {
		name, body, path string
		want             []string
	}{
		{"no endpoint", "logging: {destinations: [{format: json_lines}]}\n", "logging.destinations[0].endpoint", []string{"missing", "udp://HOST:PORT"}},
		{"an http endpoint", "logging: {destinations: [{endpoint: 'http://logs:514'}]}\n", "logging.destinations[0].endpoint", []string{"the scheme is udp, tcp or tls"}},
		{"a password", "logging: {destinations: [{endpoint: 'tcp://bob:hunter2@logs:514'}]}\n", "logging.destinations[0].endpoint", []string{"has a user"}},
		{"a bad port", "logging: {destinations: [{endpoint: 'udp://logs:0'}]}\n", "logging.destinations[0].endpoint", []string{"port 0 is not 1 to 65535"}},
		{"a bad host", "logging: {destinations: [{endpoint: 'udp://lo_gs-:514'}]}\n", "logging.destinations[0].endpoint", []string{"neither an IP address nor a DNS name"}},
		{"a multicast address", "logging: {destinations: [{endpoint: 'udp://239.1.1.1:514'}]}\n", "logging.destinations[0].endpoint", []string{"239.1.1.1 is a multicast address"}},
		{"a bad format", "logging: {destinations: [{endpoint: 'udp://logs', format: json}]}\n", "logging.destinations[0].format", []string{`"json" is not a format`, "rfc5424", "json_lines"}},
		{"twice", "logging: {destinations: [{endpoint: 'udp://logs'}, {endpoint: 'udp://LOGS:514', format: rfc5424}]}\n", "logging.destinations[1]", []string{"the same collector and format as logging.destinations[0]"}},
		{"the limited broadcast", "logging: {destinations: [{endpoint: 'udp://255.255.255.255'}]}\n", "logging.destinations[0].endpoint", []string{"the limited broadcast address"}},
		{"an IPv6 link-local address", "logging: {destinations: [{endpoint: 'udp://[fe80::1]:514'}]}\n", "logging.destinations[0].endpoint", []string{"an IPv6 link-local address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Check([]byte(header + server + tc.body))
			fe := findField(err, tc.path)
			if fe == nil {
				t.Fatalf("no error at %s:\n%v", tc.path, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(fe.Msg, w) {
					t.Errorf("%q lacks %q", fe.Msg, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the password is shown: %v", err)
			}
		})
	}
	if _, _, err := Check([]byte(header + server + "logging: {destinations: [" + strings.Repeat("{endpoint: 'udp://logs'}, ", 9) + "]}\n")); findField(err, "logging.destinations") == nil {
		t.Errorf("9 destinations: %v", err)
	}
}

func TestLoggingAccepted(t *testing.T) {
	c, w, err := Check([]byte(header + server + `logging:
  destinations:
    - endpoint: udp://192.0.2.10
    - endpoint: tcp://logs.site.example:1514
      format: json_lines
    - endpoint: tls://[2001:db8::5]
    - endpoint: udp://192.0.2.10
      format: json_lines
    - endpoint: udp://127.0.0.1:12345
`))
	if err != nil || len(w) != 0 {
		t.Fatalf("warnings %q, err %v", w, err)
	}
	if len(c.Logging.Destinations) != 5 || c.Logging.Destinations[1].Format != "json_lines" {
		t.Errorf("decoded as %+v", c.Logging)
	}
}

// TestExampleLogging: the example's commented-out logging section
// validates once uncommented.
func TestExampleLogging(t *testing.T) {
	doc := exampleWith("", "logging:")
	if !strings.Contains(doc, "\nlogging:\n  destinations:\n    - endpoint: udp://") {
		t.Fatalf("the example's logging section was not found to uncomment:\n%s", doc)
	}
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 || c.Logging == nil || len(c.Logging.Destinations) != 1 {
		t.Fatalf("the example with its logging section: warnings %q, err %v", w, err)
	}
}
