package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// behaviour is how a test tells the stand-in to misbehave. Sources, later
// ones overriding earlier ones: the kernel command line (k3sstandin.crash_after=5
// k3sstandin.crash_times=1 k3sstandin.hang k3sstandin.ready_delay=2s
// k3sstandin.ignore_sigterm k3sstandin.oom k3sstandin.syslog=TEXT k3sstandin.fetch=URL
// k3sstandin.kernel_check k3sstandin.deploy; only when the root is "/"), the file
// <root>/etc/rancher/k3s/standin.yaml, then the environment
// (ETOILE_K3S_STANDIN_CRASH_AFTER, _CRASH_TIMES, _HANG, _READY_DELAY,
// _IGNORE_SIGTERM, _EXIT_CODE).
type behaviour struct {
	// CrashAfter makes the process exit with ExitCode this long after it
	// starts (0: never). A bare number is seconds.
	CrashAfter time.Duration
	// CrashTimes limits the crashes to the first N starts, counted in
	// <data-dir>/standin-crashes (0: every start crashes).
	CrashTimes int
	// Hang keeps the process running but never ready: /readyz fails and
	// the node stays NotReady.
	Hang bool
	// ReadyDelay is how long after start the server becomes ready.
	ReadyDelay time.Duration
	// IgnoreSIGTERM makes the process ignore SIGTERM, so that a supervisor
	// must escalate to SIGKILL.
	IgnoreSIGTERM bool
	// ExitCode is the status of a crash (default 1).
	ExitCode int
	// OOM makes the crash an out-of-memory kill: the process takes memory
	// until the kernel's OOM killer ends it (SIGKILL). Only from the kernel
	// command line (k3sstandin.oom), and only under an agent that is PID 1:
	// a test VM's, never a development machine's.
	OOM bool
	// Syslog is a message the process sends to syslog (/dev/log, as
	// syslog(3) does, at severity err) once it serves, as the daemons an
	// image adds do. Only from the kernel command line (k3sstandin.syslog=TEXT).
	Syslog string
	// Fetch are https:// URLs the process GETs once it serves, through
	// Go's default client as K3s's containerd reaches a registry (the
	// system's CA bundle, the proxy environment, /etc/hosts), and
	// reports each outcome to syslog (standin-fetch-ok or
	// standin-fetch-failed, severity err so that the console shows it).
	// Only from the kernel command line (k3sstandin.fetch=URL, repeated).
	Fetch []string
	// KernelCheck makes a veth pair and asks /sbin/modprobe for what K3s's
	// networking has the kernel ask for (kernelRequests), reporting the
	// outcome to syslog (standin-kernel-check-ok or -failed). Only from the
	// kernel command line (k3sstandin.kernel_check).
	KernelCheck bool
	// Deploy reads the server's manifests folder as K3s's deploy
	// controller does once it serves (deployCheck), and reports what it
	// would deploy to syslog (standin-deploy-ok or -failed). Only from the
	// kernel command line (k3sstandin.deploy).
	Deploy bool
}

// standinFile is standin.yaml; unknown keys are an error so that a typo in
// a test does not silently test nothing.
type standinFile struct {
	CrashAfter    string `yaml:"crashAfter"`
	CrashTimes    *int   `yaml:"crashTimes"`
	Hang          *bool  `yaml:"hang"`
	ReadyDelay    string `yaml:"readyDelay"`
	IgnoreSIGTERM *bool  `yaml:"ignoreSigterm"`
	ExitCode      *int   `yaml:"exitCode"`
}

const defaultReadyDelay = 500 * time.Millisecond

// parseSeconds reads "5" (seconds) or a Go duration ("1500ms", "2s").
func parseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is neither seconds nor a duration like 1500ms", s)
	}
	return d, nil
}

func loadBehaviour(root string, getenv func(string) string) (behaviour, error) {
	b := behaviour{ReadyDelay: defaultReadyDelay, ExitCode: 1}
	if root == "/" {
		if data, err := os.ReadFile("/proc/cmdline"); err == nil {
			if err := b.applyCmdline(string(data)); err != nil {
				return b, fmt.Errorf("/proc/cmdline: %w", err)
			}
		}
	}
	path := rooted(root, standinConfigPath)
	if data, err := os.ReadFile(path); err == nil {
		if err := b.applyFile(data); err != nil {
			return b, fmt.Errorf("%s: %w", path, err)
		}
	} else if !os.IsNotExist(err) {
		return b, err
	}
	if err := b.applyEnv(getenv); err != nil {
		return b, err
	}
	return b, nil
}

func (b *behaviour) applyCmdline(cmdline string) error {
	for _, f := range strings.Fields(cmdline) {
		k, v, hasVal := strings.Cut(f, "=")
		k, ok := strings.CutPrefix(k, "k3sstandin.")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "crash_after":
			b.CrashAfter, err = parseSeconds(v)
		case "crash_times":
			b.CrashTimes, err = strconv.Atoi(v)
		case "hang":
			b.Hang = !hasVal || v == "1" || v == "true"
		case "ready_delay":
			b.ReadyDelay, err = parseSeconds(v)
		case "ignore_sigterm":
			b.IgnoreSIGTERM = !hasVal || v == "1" || v == "true"
		case "exit_code":
			b.ExitCode, err = strconv.Atoi(v)
		case "oom":
			b.OOM = !hasVal || v == "1" || v == "true"
		case "syslog":
			b.Syslog = v
		case "kernel_check":
			b.KernelCheck = !hasVal || v == "1" || v == "true"
		case "deploy":
			b.Deploy = !hasVal || v == "1" || v == "true"
		case "fetch":
			if !strings.HasPrefix(v, "https://") {
				err = fmt.Errorf("%q: give an https:// URL", v)
			}
			b.Fetch = append(b.Fetch, v)
		default:
			return fmt.Errorf("unknown stand-in argument k3sstandin.%s", k)
		}
		if err != nil {
			return fmt.Errorf("k3sstandin.%s: %w", k, err)
		}
	}
	return nil
}

func (b *behaviour) applyFile(data []byte) error {
	var f standinFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var err error
	if f.CrashAfter != "" {
		if b.CrashAfter, err = parseSeconds(f.CrashAfter); err != nil {
			return fmt.Errorf("crashAfter: %w", err)
		}
	}
	if f.ReadyDelay != "" {
		if b.ReadyDelay, err = parseSeconds(f.ReadyDelay); err != nil {
			return fmt.Errorf("readyDelay: %w", err)
		}
	}
	if f.CrashTimes != nil {
		b.CrashTimes = *f.CrashTimes
	}
	if f.Hang != nil {
		b.Hang = *f.Hang
	}
	if f.IgnoreSIGTERM != nil {
		b.IgnoreSIGTERM = *f.IgnoreSIGTERM
	}
	if f.ExitCode != nil {
		b.ExitCode = *f.ExitCode
	}
	return nil
}

func (b *behaviour) applyEnv(getenv func(string) string) error {
	const p = "ETOILE_K3S_STANDIN_"
	var err error
	if v := getenv(p + "CRASH_AFTER"); v != "" {
		if b.CrashAfter, err = parseSeconds(v); err != nil {
			return fmt.Errorf("%sCRASH_AFTER: %w", p, err)
		}
	}
	if v := getenv(p + "CRASH_TIMES"); v != "" {
		if b.CrashTimes, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("%sCRASH_TIMES: %w", p, err)
		}
	}
	if v := getenv(p + "READY_DELAY"); v != "" {
		if b.ReadyDelay, err = parseSeconds(v); err != nil {
			return fmt.Errorf("%sREADY_DELAY: %w", p, err)
		}
	}
	if v := getenv(p + "EXIT_CODE"); v != "" {
		if b.ExitCode, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("%sEXIT_CODE: %w", p, err)
		}
	}
	if v := getenv(p + "HANG"); v != "" {
		if b.Hang, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%sHANG: %w", p, err)
		}
	}
	if v := getenv(p + "IGNORE_SIGTERM"); v != "" {
		if b.IgnoreSIGTERM, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%sIGNORE_SIGTERM: %w", p, err)
		}
	}
	return nil
}
