package k3s

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// What NVIDIA's container runtime needs besides its own binary, from the
// NVIDIA Container Toolkit (NVIDIA/nvidia-container-toolkit, its config.toml
// and internal/config; NVIDIA/libnvidia-container): in its legacy mode (the
// default through toolkit 1.17, and what `auto` picks without CDI specs) it
// adds the prestart hook nvidia-container-runtime-hook, which runs
// nvidia-container-cli, which runs the machine's ldconfig (`@/sbin/ldconfig`
// by default; the `@` means the machine's, not the container's) and finds the
// driver's libraries through the machine's /etc/ld.so.cache. In CDI mode
// (nvidia-container-runtime.cdi, or mode = "cdi") it needs a CDI
// specification of the GPUs in /etc/cdi or /var/run/cdi instead.

// NvidiaRuntimeConfig is where the toolkit reads its settings.
const NvidiaRuntimeConfig = "/etc/nvidia-container-runtime/config.toml"

// nvidiaDriverLibs are the driver's libraries nvidia-container-cli must find
// in the ld.so.cache for a CUDA container (NVML for the GPUs, CUDA itself).
var nvidiaDriverLibs = []string{"libnvidia-ml.so.1", "libcuda.so.1"}

// NvidiaRuntimeProblems says what the NVIDIA container runtimes among rts
// lack under root, each with what to add: nil when each has what it needs
// (or there is none). It checks files, not that they run.
func NvidiaRuntimeProblems(root string, rts []Runtime) []string {
	var legacy, cdi []Runtime
	for _, r := range rts {
		switch r.Name {
		case "nvidia", "nvidia-experimental":
			legacy = append(legacy, r)
		case "nvidia-cdi":
			cdi = append(cdi, r)
		}
	}
	if len(legacy) == 0 && len(cdi) == 0 {
		return nil
	}
	conf := readToolkitConfig(root)
	if mode := conf["nvidia-container-runtime.mode"]; mode == "cdi" {
		cdi, legacy = append(cdi, legacy...), nil
	}
	var problems []string
	if len(legacy) > 0 {
		// The hook and the CLI are looked up on the runtime's PATH
		// (containerd's, which is K3s's), and beside the runtime, where the
		// GPU Operator's toolkit folder holds them.
		list := path.Dir(legacy[0].Path) + ":" + SystemPath
		for _, tool := range []struct{ key, name, what string }{
			{"nvidia-container-runtime-hook.path", "nvidia-container-runtime-hook", "the runtime's prestart hook"},
			{"nvidia-container-cli.path", "nvidia-container-cli", "which the hook runs (libnvidia-container's)"},
		} {
			name := tool.name
			if p := conf[tool.key]; p != "" {
				name = p
			}
			found := false
			if path.IsAbs(name) {
				found = isExecutable(root, name)
			} else {
				found = lookPath(root, list, name) != ""
			}
			if !found {
				problems = append(problems, "no "+name+" ("+tool.what+") on K3s's PATH or beside "+legacy[0].Path+": add it from the NVIDIA Container Toolkit")
			}
		}
		ldconfig := "@/sbin/ldconfig"
		if p := conf["nvidia-container-cli.ldconfig"]; p != "" {
			ldconfig = p
		}
		if host, ok := strings.CutPrefix(ldconfig, "@"); ok && !isExecutable(root, host) {
			problems = append(problems, "no "+host+": nvidia-container-cli runs the machine's ldconfig (ldconfig = \""+ldconfig+"\" in "+NvidiaRuntimeConfig+"); add the C library's ldconfig at that path")
		}
		if missing := missingFromLdCache(root, nvidiaDriverLibs); len(missing) > 0 {
			problems = append(problems, "/etc/ld.so.cache does not list "+strings.Join(missing, ", ")+": nvidia-container-cli finds the driver's libraries through it; add the driver's libraries and run ldconfig -r on the layer after they are in place")
		}
	}
	if len(cdi) > 0 && !HasCDISpec(root) {
		problems = append(problems, "no CDI specification in /etc/cdi or /var/run/cdi for "+cdi[0].Path+": add nvidia-ctk to the image (the agent then generates it at boot, before K3s), or a specification made with nvidia-ctk cdi generate on a machine with the same driver")
	}
	return problems
}

// readToolkitConfig reads the toolkit's config.toml as section.key → value
// for the plain `key = "value"` lines it needs; a missing file is the
// toolkit's defaults (an empty map).
func readToolkitConfig(root string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(filepath.Join(root, NvidiaRuntimeConfig))
	if err != nil {
		return out
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(strings.TrimSpace(strings.Trim(line, "[]")), `"`)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.Index(v, " #"); i >= 0 && !strings.HasPrefix(v, `"`) {
			v = strings.TrimSpace(v[:i])
		}
		if strings.HasPrefix(v, `"`) {
			if end := strings.Index(v[1:], `"`); end >= 0 {
				v = v[1 : end+1]
			}
		}
		out[section+"."+strings.TrimSpace(k)] = v
	}
	return out
}

// missingFromLdCache returns the libraries of libs that root's
// /etc/ld.so.cache does not list (all of them when there is none). The
// cache's string table holds each entry's path NUL-terminated; the entry's
// name (the soname, its key) is either a string of its own or, as current
// glibc's ldconfig writes it, the tail of that path after its last slash.
func missingFromLdCache(root string, libs []string) []string {
	data, err := os.ReadFile(filepath.Join(root, "etc/ld.so.cache"))
	if err != nil {
		return libs
	}
	var missing []string
	for _, lib := range libs {
		if !bytes.Contains(data, []byte("/"+lib+"\x00")) && !bytes.Contains(data, []byte("\x00"+lib+"\x00")) {
			missing = append(missing, lib)
		}
	}
	return missing
}

// HasCDISpec reports whether a CDI specification (.yaml or .json) is in
// one of the folders the CDI runtime reads.
func HasCDISpec(root string) bool {
	for _, dir := range []string{"etc/cdi", "var/run/cdi", "run/cdi"} {
		entries, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".json")) {
				return true
			}
		}
	}
	return false
}

// LookTool finds a tool of the NVIDIA Container Toolkit (nvidia-ctk) as K3s
// finds the runtimes: RuntimesPath, then SystemPath; its path in the
// machine's view, or "".
func LookTool(root, name string) string {
	return lookPath(root, RuntimesPath+":"+SystemPath, name)
}
