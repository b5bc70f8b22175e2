package inventory

import (
	"sort"
	"strconv"
	"strings"
)

// Node label keys the agent passes to K3s (node-label) for GPU nodes. nvidia.com/gpu.present
// is the label NVIDIA's GPU operator and device plugin charts select nodes by.
const (
	LabelGPUVendor      = "etoile.io/gpu.vendor"
	LabelGPUModel       = "etoile.io/gpu.model"
	LabelGPUCount       = "etoile.io/gpu.count"
	LabelNvidiaPresent  = "nvidia.com/gpu.present"
	maxLabelValueLength = 63
)

// NodeLabels returns the Kubernetes node labels that describe the machine's NVIDIA GPUs, or
// an empty map when it has none. Other vendors' GPUs get no labels yet: an integrated Intel
// GPU on every edge box would otherwise make each of them look like a GPU node.
//
// The model is the driver's name of the GPU (NVIDIA's product name): pci.ids names the chip
// (GH100 [H100 SXM5 80GB]), which differs, and is old for the newest GPUs, so a machine whose
// driver has not loaded gets no model label rather than another value for the same hardware.
// With GPUs of several models the label names the most common one (ties: the first in sorted
// order), so the value is stable from boot to boot; the count is of all the physical GPUs,
// with their driver or not (SR-IOV virtual functions are not listed as GPUs), but for those
// excluded from NVIDIA's driver (GPU.Excluded): no pod can be given one.
func NodeLabels(inv *Inventory) map[string]string {
	labels := map[string]string{}
	if inv == nil {
		return labels
	}
	models := map[string]int{}
	n := 0
	for _, g := range inv.GPUs {
		if g.Vendor != "nvidia" || g.Excluded {
			continue
		}
		n++
		if g.ModelSource == "driver" {
			models[LabelValue(g.Model)]++
		}
	}
	if n == 0 {
		return labels
	}
	names := make([]string, 0, len(models))
	for m := range models {
		names = append(names, m)
	}
	sort.Slice(names, func(i, j int) bool {
		if models[names[i]] != models[names[j]] {
			return models[names[i]] > models[names[j]]
		}
		return names[i] < names[j]
	})
	labels[LabelGPUVendor] = "nvidia"
	if len(names) > 0 && names[0] != "" {
		labels[LabelGPUModel] = names[0]
	}
	labels[LabelGPUCount] = strconv.Itoa(n)
	labels[LabelNvidiaPresent] = "true"
	return labels
}

// LabelValue turns free text into a valid Kubernetes label value: at most 63 characters of
// [A-Za-z0-9._-], beginning and ending with a letter or digit. Runs of other characters
// become one "-" ("NVIDIA H100 80GB HBM3" → "NVIDIA-H100-80GB-HBM3"); "" when nothing is left.
func LabelValue(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			if !dash {
				b.WriteByte('-')
				dash = true
			}
			continue
		}
		b.WriteRune(r)
		dash = false
	}
	v := trimToAlnum(b.String())
	if len(v) > maxLabelValueLength {
		v = trimToAlnum(v[:maxLabelValueLength])
	}
	return v
}

func trimToAlnum(s string) string {
	isAlnum := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }
	return strings.TrimFunc(s, func(r rune) bool { return !isAlnum(r) })
}

// NodeLabelList writes labels as K3s's node-label list wants them ("key=value"), sorted so
// the K3s config the agent writes does not change from boot to boot.
func NodeLabelList(labels map[string]string) []string {
	out := make([]string, 0, len(labels))
	for k, v := range labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
