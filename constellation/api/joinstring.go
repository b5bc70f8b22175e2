package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// JoinScheme is the URI scheme of a join string. The string reads
//
//	etoile://HOST:PORT[/PATH]?token=ID.SECRET&ca=sha256:HEX
//
// where HOST:PORT/PATH is the hub's HTTPS base URL, ID.SECRET the join token
// and HEX the SHA-256 of the hub CA's SubjectPublicKeyInfo (kubeadm's
// discovery hash). Everything a site needs to join fits on one line and in
// one QR code.
const JoinScheme = "etoile"

// MaxJoinStringLen bounds what a site accepts from a console or config file.
const MaxJoinStringLen = 1024

var (
	tokenIDPattern     = lazyRegexp(`^[0-9a-f]{16}$`)
	tokenSecretPattern = lazyRegexp(`^[A-Za-z0-9_-]{43}$`)
	pinPattern         = lazyRegexp(`^[0-9a-f]{64}$`)
)

// JoinString is the parsed form of a join string.
type JoinString struct {
	// Hub is the hub's base URL, always https.
	Hub string
	// TokenID names the token on the hub; TokenSecret proves it.
	TokenID     string
	TokenSecret string
	// CAPin is the lowercase hex SHA-256 of the hub CA's SubjectPublicKeyInfo.
	CAPin string
}

// Token returns "ID.SECRET", the form sent to the hub.
func (j JoinString) Token() string { return j.TokenID + "." + j.TokenSecret }

// String renders the join string.
func (j JoinString) String() string {
	u, err := url.Parse(j.Hub)
	if err != nil {
		return ""
	}
	q := "token=" + j.TokenID + "." + j.TokenSecret + "&ca=sha256:" + j.CAPin
	return JoinScheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/") + "?" + q
}

// ParseJoinString parses and validates a join string. Its errors name the
// part that is wrong, because a technician typed or scanned it, and never
// quote the token secret: they end up in logs and on consoles.
func ParseJoinString(s string) (JoinString, error) {
	s = strings.TrimSpace(s)
	secrets := joinStringSecrets(s)
	js, err := parseJoinString(s, secrets)
	if err != nil {
		if msg := redactSecrets(err.Error(), secrets); msg != err.Error() {
			err = errors.New(msg) // a safety net: the parts are redacted already
		}
		return JoinString{}, err
	}
	return js, nil
}

// joinStringForm is how a join string reads, for error messages.
const joinStringForm = JoinScheme + "://HOST:PORT?token=ID.SECRET&ca=sha256:HEX"

// parseJoinString is ParseJoinString; secrets are what must not appear in
// its errors (see joinStringSecrets).
func parseJoinString(s string, secrets []string) (JoinString, error) {
	// show makes a part of s fit to quote in an error: short, without secret.
	show := func(part string) string { return clip(redactSecrets(part, secrets)) }
	if len(s) > MaxJoinStringLen {
		return JoinString{}, fmt.Errorf("join string is %d bytes, more than %d: copy it again from `etoile hub token create`", len(s), MaxJoinStringLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the whole string, secret included: only
		// its reason is shown, with the part it is about.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		reason := strings.ToValidUTF8(redactSecrets(err.Error(), secrets), "?")
		if len(reason) > 100 {
			reason = strings.ToValidUTF8(reason[:100], "") + "…"
		}
		switch {
		case missingQuery(s):
			return JoinString{}, fmt.Errorf("join string hub address is wrong (%s): a '?' must come between HOST:PORT and token=; it should read %s", reason, joinStringForm)
		case strings.Contains(reason, "port"):
			return JoinString{}, fmt.Errorf("join string hub port is wrong (%s): it should read %s", reason, joinStringForm)
		case strings.Contains(reason, "host"):
			return JoinString{}, fmt.Errorf("join string hub host is wrong (%s): it should read %s", reason, joinStringForm)
		default:
			return JoinString{}, fmt.Errorf("join string is not a URI (%s): it should read %s", reason, joinStringForm)
		}
	}
	if u.Scheme != JoinScheme {
		return JoinString{}, fmt.Errorf("join string scheme is %q, want %q: it should read %s", show(u.Scheme), JoinScheme, joinStringForm)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return JoinString{}, errors.New("join string has user info, a fragment or an opaque part: it should read " + joinStringForm)
	}
	host := u.Hostname()
	if host == "" {
		return JoinString{}, errors.New("join string has no hub host")
	}
	if net.ParseIP(host) == nil && !hostnamePattern.MatchString(host) {
		if missingQuery(s) {
			return JoinString{}, fmt.Errorf("join string hub host %q is neither an IP address nor a DNS name: a '?' must come between HOST:PORT and token=; it should read %s", show(host), joinStringForm)
		}
		return JoinString{}, fmt.Errorf("join string hub host %q is neither an IP address nor a DNS name", show(host))
	}
	if p := u.Port(); p != "" {
		if !portPattern.MatchString(p) {
			return JoinString{}, fmt.Errorf("join string hub port %q is not a number from 1 to 65535", show(p))
		}
	}
	if u.Path != "" && !pathPattern.MatchString(u.Path) {
		return JoinString{}, fmt.Errorf("join string hub path %q holds characters other than letters, digits and -._/", show(u.Path))
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return JoinString{}, fmt.Errorf("join string query: %s", show(err.Error()))
	}
	for k, v := range q {
		if k != "token" && k != "ca" {
			return JoinString{}, fmt.Errorf("join string has unknown parameter %q (only token and ca)", show(k))
		}
		if len(v) != 1 {
			return JoinString{}, fmt.Errorf("join string parameter %q appears %d times, want once", k, len(v))
		}
	}
	tok := q.Get("token")
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || !tokenIDPattern.MatchString(id) || !tokenSecretPattern.MatchString(secret) {
		return JoinString{}, errors.New("join string token is not ID.SECRET (16 hex digits, a dot, 43 base64url characters)")
	}
	pin, ok := strings.CutPrefix(q.Get("ca"), "sha256:")
	if !ok || !pinPattern.MatchString(pin) {
		return JoinString{}, fmt.Errorf("join string ca is not sha256: followed by 64 lowercase hex digits (it is %q, %d characters): copy the whole join string etoile hub token create printed", show(q.Get("ca")), len(q.Get("ca")))
	}
	hub := url.URL{Scheme: "https", Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	return JoinString{Hub: hub.String(), TokenID: id, TokenSecret: secret, CAPin: pin}, nil
}

// missingQuery reports whether a join string's hub address runs into its
// parameters (etoile://HOST:PORT&token=…): the '?' was left out.
func missingQuery(s string) bool {
	rest, ok := strings.CutPrefix(s, JoinScheme+"://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return ok && strings.ContainsAny(rest, "&=")
}

// secretRedacted stands for a token secret in error messages.
const secretRedacted = "<secret>"

var (
	tokenParamPattern = lazyRegexp(`(?i)token(?:=|%3d)([^&#?/;\s]*)`)
	tokenShapePattern = lazyRegexp(`[0-9A-Fa-f]{16}(?:\.|%2[eE])([A-Za-z0-9_%-]+)`)
)

// joinStringSecrets returns what in a join string, however mistyped, may be
// a token secret: a token parameter's value after its ID and dot (all of
// it without a dot), and whatever follows 16 hex digits and a dot.
func joinStringSecrets(s string) []string {
	var out []string
	for _, m := range tokenParamPattern.FindAllStringSubmatch(s) {
		v := m[1]
		for _, dot := range []string{".", "%2e", "%2E"} {
			if _, after, ok := strings.Cut(v, dot); ok {
				v = after
				break
			}
		}
		out = append(out, v)
	}
	for _, m := range tokenShapePattern.FindAllStringSubmatch(s) {
		out = append(out, m[1])
	}
	// Longest first, so that a secret is redacted whole before any shorter
	// candidate inside it.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// redactSecrets replaces the secrets in msg. Candidates too short to be a
// secret worth hiding are left, so that messages stay readable.
func redactSecrets(msg string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			msg = strings.ReplaceAll(msg, sec, secretRedacted)
		}
	}
	return msg
}

// SplitToken splits "ID.SECRET" as sent in a join request.
func SplitToken(tok string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || !tokenIDPattern.MatchString(id) || !tokenSecretPattern.MatchString(secret) {
		return "", "", errors.New("token is not ID.SECRET (16 hex digits, a dot, 43 base64url characters)")
	}
	return id, secret, nil
}

// NewTokenCredentials returns a fresh token id and a 32-byte secret.
func NewTokenCredentials() (id, secret string, err error) {
	var idb [8]byte
	var sb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", fmt.Errorf("token id: %w", err)
	}
	if _, err := rand.Read(sb[:]); err != nil {
		return "", "", fmt.Errorf("token secret: %w", err)
	}
	return hex.EncodeToString(idb[:]), base64.RawURLEncoding.EncodeToString(sb[:]), nil
}

// ValidateHubURL checks a hub's advertised URL as the join string will
// carry it: https, an IP address or DNS name, a port (when given) from 1 to
// 65535, a plain path, nothing else.
func ValidateHubURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not https://HOST[:PORT]: %w", err)
	}
	if u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return errors.New("not https://HOST[:PORT] (https, without user, query or fragment)")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("no host: give https://HOST[:PORT]")
	}
	if net.ParseIP(host) == nil && !hostnamePattern.MatchString(host) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", clip(host))
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if !portPattern.MatchString(p) {
			return fmt.Errorf("port %q is not a number from 1 to 65535", clip(p))
		}
	}
	if u.Path != "" && !pathPattern.MatchString(u.Path) {
		return fmt.Errorf("path %q holds characters other than letters, digits and -._/", clip(u.Path))
	}
	return nil
}
