package api

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	goodID     = "0123456789abcdef"
	goodSecret = "0s6BAprqLazyJiwASvIXFRvjDbw_-7p_Q8oWIdqneyg"
	goodPin    = "14bb57aa51ae64d9b3d4fb2f8614cf3ab685f1dd5a9bc46c7911f4ab45a7d1c1"
)

func TestParseJoinString(t *testing.T) {
	good := "etoile://hub.example.eu:8443?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin
	tests := []struct {
		name, in, wantHub, wantErr string
	}{
		{"dns host", good, "https://hub.example.eu:8443", ""},
		{"ip host, path, spaces", "  etoile://10.0.0.5:443/etoile?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin + "\n", "https://10.0.0.5:443/etoile", ""},
		{"ipv6", "etoile://[::1]:8443?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin, "https://[::1]:8443", ""},
		{"https scheme", strings.Replace(good, "etoile://", "https://", 1), "", `scheme is "https"`},
		{"no host", "etoile://?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin, "", "no hub host"},
		{"bad port", strings.Replace(good, "8443", "99999", 1), "", "port"},
		{"short secret", strings.Replace(good, goodSecret, goodSecret[:20], 1), "", "token is not ID.SECRET"},
		{"no dot", strings.Replace(good, goodID+".", goodID, 1), "", "token is not ID.SECRET"},
		{"uppercase pin", strings.Replace(good, goodPin, strings.ToUpper(goodPin), 1), "", "ca is not sha256:"},
		{"md5 pin", strings.Replace(good, "sha256:", "md5:", 1), "", "ca is not sha256:"},
		{"extra param", good + "&x=1", "", `unknown parameter "x"`},
		{"repeated token", good + "&token=" + goodID + "." + goodSecret, "", "appears 2 times"},
		{"user info", strings.Replace(good, "etoile://", "etoile://bob@", 1), "", "user info"},
		{"fragment", good + "#x", "", "fragment"},
		{"html in host", "etoile://<script>:1?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin, "", ""},
		{"too long", good + strings.Repeat("a", 2000), "", "more than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, err := ParseJoinString(tt.in)
			if tt.wantHub == "" {
				if err == nil {
					t.Fatalf("ParseJoinString(%q) = %+v, want an error", tt.in, js)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJoinString: %v", err)
			}
			if js.Hub != tt.wantHub || js.TokenID != goodID || js.TokenSecret != goodSecret || js.CAPin != goodPin {
				t.Fatalf("got %+v", js)
			}
			// The string form parses back to the same value.
			again, err := ParseJoinString(js.String())
			if err != nil || again != js {
				t.Fatalf("round trip %q: %+v, %v", js.String(), again, err)
			}
		})
	}
}

func TestValidateRefusesInjection(t *testing.T) {
	hostile := []string{"x'; DROP TABLE sites;--", "<script>alert(1)</script>", "../../etc/passwd", "a\x00b", "a\nb", "\x1b[31mred", strings.Repeat("a", 100), "Paris 1", ""}
	for _, s := range hostile {
		if ValidateName("site", s) == nil {
			t.Errorf("site name %q accepted", s)
		}
		if (Attributes{Country: s + "X"}).Validate() == nil {
			t.Errorf("country %q accepted", s+"X")
		}
		if (Attributes{Tags: []string{s}}).Validate() == nil {
			t.Errorf("tag %q accepted", s)
		}
		if s != "" && (Heartbeat{K3sVersion: s}).Validate() == nil {
			t.Errorf("k3s version %q accepted", s)
		}
		if (Inventory{GPUs: []GPU{{Vendor: s, Count: 1}}}).Validate() == nil {
			t.Errorf("gpu vendor %q accepted", s)
		}
		if _, _, err := ParseKV("country=" + s); err == nil {
			t.Errorf("need value %q accepted", s)
		}
	}
	for _, ok := range []string{"paris-1", "fra2", "a"} {
		if err := ValidateName("site", ok); err != nil {
			t.Errorf("site name %q refused: %v", ok, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown field", `{"nodes":1,"evil":true}`, "unknown field"},
		{"trailing data", `{"nodes":1} {"nodes":2}`, "after the JSON value"},
		{"not json", `nodes=1`, "not the expected JSON"},
		{"wrong type", `{"nodes":"1"}`, "not the expected JSON"},
		{"not utf8", "{\"slot\":\"\xff\"}", "not UTF-8"},
		{"too large", `{"k3sVersion":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hb Heartbeat
			err := Decode(strings.NewReader(tt.body), &hb)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%.40q) = %v, want error with %q", tt.body, err, tt.want)
			}
		})
	}
}

func FuzzParseJoinString(f *testing.F) {
	f.Add("etoile://hub.example.eu:8443?token=" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin)
	f.Add("etoile://[::1]:1/p?token=a.b&ca=sha256:")
	f.Add("etoile://%zz")
	f.Fuzz(func(t *testing.T, s string) {
		js, err := ParseJoinString(s)
		if err != nil {
			return
		}
		// Whatever parses must render and parse back identically, and its
		// parts must hold to their patterns.
		again, err := ParseJoinString(js.String())
		if err != nil || again != js {
			t.Fatalf("round trip of %q: %+v vs %+v (%v)", s, js, again, err)
		}
		if _, _, err := SplitToken(js.Token()); err != nil {
			t.Fatalf("accepted token %q: %v", js.Token(), err)
		}
	})
}

func FuzzDecodeRequests(f *testing.F) {
	f.Add([]byte(`{"token":"` + goodID + "." + goodSecret + `","csr":"-----BEGIN CERTIFICATE REQUEST-----","inventory":{"nodes":1,"cpuMillis":1000,"memoryBytes":1}}`))
	f.Add([]byte(`{"nodes":3,"nodesReady":2,"k3sVersion":"v1.31.4+k3s1","slot":"a","capacity":{"cpuMillis":1,"gpus":[{"vendor":"nvidia","count":2}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var jr JoinRequest
		if DecodeBytes(body, &jr) == nil && jr.Validate() == nil {
			if _, err := json.Marshal(jr); err != nil {
				t.Fatal(err)
			}
		}
		var hb Heartbeat
		if DecodeBytes(body, &hb) == nil && hb.Validate() == nil {
			if hb.NodesReady > hb.Nodes || hb.Capacity.CPUMillis < 0 {
				t.Fatalf("validated heartbeat out of range: %+v", hb)
			}
		}
	})
}

func TestValidateSelectorKeysAndValues(t *testing.T) {
	for _, tt := range []struct {
		sel  map[string]string
		want string // "" for accepted
	}{
		{map[string]string{"tag": "gdpr", "country": "FR"}, ""},
		{map[string]string{"tag": "gdpr,nis2"}, ""},
		{map[string]string{"countyr": "FR"}, "valid keys: country, region"},
		{map[string]string{"country": "fr"}, "ISO 3166-1"},
		{map[string]string{"tag": "GDPR"}, "tag \"GDPR\""},
		{map[string]string{"tag": "gdpr,GDPR"}, "tag \"GDPR\""},
		{map[string]string{"tag": "gdpr,gdpr"}, "twice"},
		{map[string]string{"tag": "gdpr,"}, "tag"},
		{map[string]string{"jurisdiction": "eu"}, "jurisdiction"},
		{map[string]string{"slot": "c"}, "slot"},
		{map[string]string{"k3s.version": "v1.34.9+k3s1"}, ""}, // a real K3s version has a +
		{map[string]string{"k3s.version": "v1.34 9"}, "k3s.version"},
	} {
		err := ValidateSelector(tt.sel)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ValidateSelector(%v) = %v, want %q", tt.sel, err, tt.want)
		}
	}
}

func TestSelectorTagsAreAllRequired(t *testing.T) {
	sel := map[string]string{"tag": "gdpr,nis2"}
	if Selects(sel, Site{Attributes: Attributes{Tags: []string{"gdpr"}}}) {
		t.Error("a gdpr,nis2 selector selects a site with only gdpr")
	}
	if !Selects(sel, Site{Attributes: Attributes{Tags: []string{"dora", "nis2", "gdpr"}}}) {
		t.Error("a gdpr,nis2 selector misses a site with both")
	}
	if !Selects(map[string]string{"tag": "gdpr"}, Site{Attributes: Attributes{Tags: []string{"gdpr"}}}) {
		t.Error("a stored one-tag selector no longer selects")
	}
	if got := strings.Join(SelectorTerms(map[string]string{"tag": "nis2,gdpr", "country": "FR"}), " "); got != "country=FR tag=gdpr tag=nis2" {
		t.Errorf("SelectorTerms = %q", got)
	}
	if got := NormalizeSelector(map[string]string{"tag": "nis2,gdpr,nis2"})["tag"]; got != "gdpr,nis2" {
		t.Errorf("NormalizeSelector tag = %q", got)
	}
}

func TestValidateHubURL(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"https://hub.example:8443", ""},
		{"https://10.0.0.1", ""},
		{"https://[::1]:443/hub", ""},
		{"https://x:99999", "1 to 65535"},
		{"https://x:0", "1 to 65535"},
		{"https://x:", "1 to 65535"},
		{"http://x:8443", "https"},
		{"https://x_y:8443", "DNS name"},
		{"https://x:8443?a=b", "query"},
	} {
		err := ValidateHubURL(tt.url)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ValidateHubURL(%q) = %v, want %q", tt.url, err, tt.want)
		}
	}
}

func TestValidateAuditAction(t *testing.T) {
	if err := ValidateAuditAction(""); err != nil {
		t.Error(err)
	}
	if err := ValidateAuditAction(AuditAdminIssue); err != nil {
		t.Error(err)
	}
	if err := ValidateAuditAction("nosuch"); err == nil || !strings.Contains(err.Error(), "site.join") {
		t.Errorf("unknown action: %v", err)
	}
}

// TestGPUModelIsFreeText: a GPU model is what the hardware calls it (the
// pci.ids name, the driver's, or vendor:device), so a site with any GPU
// can join and heartbeat; only unprintable or over-long text is refused,
// with the field named.
func TestGPUModelIsFreeText(t *testing.T) {
	for _, m := range []string{
		"Alder Lake-UP3 GT2 [Iris Xe Graphics]", // pci.ids
		"GH100 [H100 SXM5 80GB]",                // pci.ids
		"NVIDIA H100 80GB HBM3",                 // the driver
		"NVIDIA H200",
		"10de:2335", // unknown to both
		"AMD Instinct MI300X",
		"Radeon™ RX 7900 XTX (Navi 31)",
		strings.Repeat("x", MaxGPUModelLen),
		"",
	} {
		gpus := []GPU{{Vendor: "intel", Count: 1}, {Vendor: "nvidia", Model: m, Count: 2, Used: 1}}
		if err := (Inventory{Nodes: 1, GPUs: gpus}).Validate(); err != nil {
			t.Errorf("inventory with GPU model %q: %v", m, err)
		}
		if err := (Heartbeat{Nodes: 1, Capacity: Capacity{GPUs: gpus}}).Validate(); err != nil {
			t.Errorf("heartbeat with GPU model %q: %v", m, err)
		}
	}
	for _, tt := range []struct{ model, why string }{
		{"NVIDIA\x07H100", "U+0007"},
		{"NVIDIA H100\n[ERROR] forged log line", "U+000A"},
		{"\x1b[31mH100", "U+001B"},
		{"H100\x00", "U+0000"},
		{"H100 \u202eevil", "U+202E"}, // a bidi override
		{"H\u200b100", "U+200B"},      // a zero-width space
		{"H100\xff", "not UTF-8"},
		{" H100", "leading or trailing spaces"},
		{"H100\t", "leading or trailing spaces"},
		{strings.Repeat("x", MaxGPUModelLen+1), "is 129 bytes"},
		{strings.Repeat("é", 65), "is 130 bytes"}, // 65 characters, but bytes count
	} {
		gpus := []GPU{{Vendor: "intel", Count: 1}, {Vendor: "nvidia", Model: tt.model, Count: 1}}
		for _, err := range []error{(Inventory{Nodes: 1, GPUs: gpus}).Validate(), (Heartbeat{Nodes: 1, Capacity: Capacity{GPUs: gpus}}).Validate()} {
			if err == nil {
				t.Errorf("GPU model %q accepted", tt.model)
				continue
			}
			for _, want := range []string{"gpus[1].model", tt.why, "printable UTF-8", "128 bytes at most"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("GPU model %q: error %q does not say %q", tt.model, err, want)
				}
			}
			if strings.ContainsAny(err.Error(), "\x00\x07\x1b\n\u202e\u200b") {
				t.Errorf("GPU model %q: error %q holds the character it refuses", tt.model, err)
			}
		}
	}
}

// TestJoinStringErrorsKeepTheSecret: whatever is mistyped, the error (which
// reaches logs and consoles) names the wrong part but never holds the
// token secret, nor a piece of it.
func TestJoinStringErrorsKeepTheSecret(t *testing.T) {
	tok := "token=" + goodID + "." + goodSecret
	for _, tt := range []struct{ name, in, want string }{
		{"bad port", "etoile://hub.example.eu:84x3?" + tok + "&ca=sha256:" + goodPin, `hub port is wrong (invalid port ":84x3" after host)`},
		{"space in host", "etoile://hub example.eu:8443?" + tok + "&ca=sha256:" + goodPin, `hub host is wrong (invalid character " " in host name)`},
		{"no ? after the port", "etoile://hub.example.eu:8443&" + tok + "&ca=sha256:" + goodPin, "a '?' must come between HOST:PORT and token="},
		{"no ? after the host", "etoile://hub.example.eu&" + tok, "a '?' must come between HOST:PORT and token="},
		{"bad escape in host", "etoile://hub.%zzexample.eu:8443?" + tok + "&ca=sha256:" + goodPin, `invalid URL escape "%zz"`},
		{"control character", "etoile://hub.example.eu:8443?" + tok + "\x7f&ca=sha256:" + goodPin, "invalid control character"},
		{"unclosed IPv6", "etoile://[::1:8443?" + tok + "&ca=sha256:" + goodPin, "missing ']' in host"},
		{"/ for ?", "etoile://hub.example.eu:8443/" + tok + "&ca=sha256:" + goodPin, "hub path"},
		{"escaped =", "etoile://hub.example.eu:8443?token%3D" + goodID + "." + goodSecret + "&ca=sha256:" + goodPin, "unknown parameter"},
		{"escaped . and =", "etoile://hub.example.eu:8443?token%3D" + goodID + "%2E" + goodSecret + "&ca=sha256:" + goodPin, "unknown parameter"},
		{"no dot", "etoile://hub.example.eu:8443/?token=" + goodID + goodSecret + "&ca=sha256:" + goodPin, "token is not ID.SECRET"},
		{"bad scheme", "etoile//hub.example.eu:8443?" + tok + "&ca=sha256:" + goodPin, "scheme"},
		{"bad pin", "etoile://hub.example.eu:8443?" + tok + "&ca=sha256:zz", "ca is not sha256:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJoinString(tt.in)
			if err == nil {
				t.Fatalf("ParseJoinString(%q) accepted", tt.in)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			for i := 0; i+8 <= len(goodSecret); i++ {
				if strings.Contains(msg, goodSecret[i:i+8]) {
					t.Fatalf("error %q holds the token secret (%q)", msg, goodSecret[i:i+8])
				}
			}
		})
	}
}
