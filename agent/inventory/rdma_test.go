package inventory

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// rdmaTree is a GPU node's RDMA adapters as the kernel shows them for mlx5 (ConnectX):
//
//   - mlx5_0, a ConnectX-7 in InfiniBand mode, its port active at 400 Gb/s NDR, without
//     ib_ipoib: no netdev, in no NIC list;
//   - mlx5_2, a ConnectX-6 Dx running RoCE: an Ethernet port whose GID table names its
//     netdev, ens2f0np0;
//   - mlx5_bond_0, RoCE over a bond of another ConnectX-6 Dx's ports: its netdev is the
//     bond, not the PCI function's own NIC;
//   - mlx5_10, a ConnectX-7 whose InfiniBand port is down (disabled), with IPoIB's ib1 and
//     two P_Key children under its PCI function: ib1.8001 (echo 0x8001 > create_child) and
//     ib-storage (ip link add link ib1 name ib-storage type ipoib pkey 0x8002), each with
//     the parent attribute the kernel gives a child;
//   - softroce0 and sroce0, soft RoCE (rxe) over ens2f0np0 (the kernel puts one under
//     /devices/virtual, or under the NIC's device with a "parent" attribute), and siw0,
//     soft iWARP under the NIC's device: no adapters.
func rdmaTree(t *testing.T) string {
	t.Helper()
	const (
		cx7   = "sys/devices/pci0000:37/0000:37:01.0/0000:3b:00.0"
		cx6dx = "sys/devices/pci0000:5d/0000:5d:01.0/0000:5e:00.0"
		cx7b  = "sys/devices/pci0000:37/0000:37:02.0/0000:3c:00.0"
		lag   = "sys/devices/pci0000:85/0000:85:01.0/0000:86:00.0"
		rxe   = "sys/devices/virtual/infiniband/softroce0"
	)
	files := map[string]string{}
	links := map[string]string{}
	for _, f := range []struct{ dir, device, class string }{
		{cx7, "0x1021", "0x020700"}, {cx6dx, "0x101d", "0x020000"}, {cx7b, "0x1021", "0x020700"},
		{lag, "0x101d", "0x020000"},
	} {
		files[f.dir+"/vendor"], files[f.dir+"/device"], files[f.dir+"/class"] = "0x15b3\n", f.device+"\n", f.class+"\n"
		addr := f.dir[strings.LastIndex(f.dir, "/")+1:]
		links["sys/bus/pci/devices/"+addr] = "../../../" + strings.TrimPrefix(f.dir, "sys/")
		links[f.dir+"/driver"] = "../../../../bus/pci/drivers/mlx5_core"
	}
	hca := func(dir, name, guid, fw, hcaType, board string, port map[string]string) {
		ib := dir + "/infiniband/" + name
		if !strings.HasPrefix(dir, "sys/devices/virtual") {
			links[ib+"/device"] = "../../../" + dir[strings.LastIndex(dir, "/")+1:]
		} else {
			ib = dir
		}
		links["sys/class/infiniband/"+name] = "../../" + strings.TrimPrefix(ib, "sys/")
		files[ib+"/node_guid"], files[ib+"/fw_ver"], files[ib+"/node_type"] = guid+"\n", fw+"\n", "1: CA\n"
		if hcaType != "" {
			files[ib+"/hca_type"], files[ib+"/board_id"] = hcaType+"\n", board+"\n"
		}
		for k, v := range port {
			files[ib+"/ports/1/"+k] = v + "\n"
		}
	}
	hca(cx7, "mlx5_0", "b8ce:f603:00a1:b2c3", "28.39.1002", "MT4129", "MT_0000000838", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "400 Gb/sec (4X NDR)", "link_layer": "InfiniBand",
		"lid": "0x1a", "sm_lid": "0x1", "gids/0": "fe80:0000:0000:0000:b8ce:f603:00a1:b2c3",
	})
	hca(cx6dx, "mlx5_2", "0c42:a103:0065:4321", "22.36.1010", "MT4125", "MT_0000000359", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "100 Gb/sec (4X EDR)", "link_layer": "Ethernet",
		"lid": "0x0", "gid_attrs/ndevs/0": "ens2f0np0", "gid_attrs/types/0": "IB/RoCE v1",
	})
	hca(cx7b, "mlx5_10", "b8ce:f603:00a1:b2d4", "28.39.1002", "MT4129", "MT_0000000838", map[string]string{
		"state": "1: DOWN", "phys_state": "3: Disabled", "rate": "10 Gb/sec (4X SDR)", "link_layer": "InfiniBand",
		"lid": "0x0",
	})
	hca(rxe, "softroce0", "0e42:a1ff:fe65:4321", "0.0.0", "", "", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "100 Gb/sec (4X EDR)", "link_layer": "Ethernet",
	})
	hca(cx6dx, "sroce0", "0e42:a1ff:fe65:4321", "0.0.0", "", "", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "100 Gb/sec (4X EDR)", "link_layer": "Ethernet",
	})
	files[cx6dx+"/infiniband/sroce0/parent"] = "ens2f0np0\n"
	hca(cx6dx, "siw0", "0e42:a1ff:fe65:4321", "0.0.0", "", "", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "100 Gb/sec (4X EDR)", "link_layer": "Ethernet",
	})
	files[cx6dx+"/infiniband/siw0/node_type"] = "4: RNIC\n"
	hca(lag, "mlx5_bond_0", "0c42:a103:0065:8765", "22.36.1010", "MT4125", "MT_0000000359", map[string]string{
		"state": "4: ACTIVE", "phys_state": "5: LinkUp", "rate": "200 Gb/sec (4X HDR)", "link_layer": "Ethernet",
		"lid": "0x0", "gid_attrs/ndevs/0": "bond0",
	})

	// The netdevs: the RoCE port's Ethernet NIC and the down HCA's IPoIB interface with its child.
	for _, n := range []struct{ dir, name, addr, typ, port string }{
		{cx6dx, "ens2f0np0", "0c:42:a1:65:43:21", "1", "0"},
		{lag, "ens3f0np0", "0c:42:a1:65:87:65", "1", "0"},
		{cx7b, "ib1", "00:00:10:29:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:a1:b2:d4", "32", "0"},
		{cx7b, "ib1.8001", "00:00:10:2a:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:a1:b2:d4", "32", "0"},
		{cx7b, "ib-storage", "00:00:10:2b:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:a1:b2:d4", "32", "0"},
	} {
		net := n.dir + "/net/" + n.name
		files[net+"/address"], files[net+"/type"], files[net+"/dev_port"] = n.addr+"\n", n.typ+"\n", n.port+"\n"
		if pkey, ok := map[string]string{"ib1": "0xffff", "ib1.8001": "0x8001", "ib-storage": "0x8002"}[n.name]; ok {
			files[net+"/pkey"] = pkey + "\n"
			if n.name != "ib1" {
				files[net+"/parent"] = "ib1\n"
			}
		}
		links[net+"/device"] = "../../../" + n.dir[strings.LastIndex(n.dir, "/")+1:]
		links["sys/class/net/"+n.name] = "../../" + strings.TrimPrefix(net, "sys/")
	}
	return tree(t, files, links)
}

// TestRDMAAdapters: the InfiniBand and RoCE adapters of a GPU node are listed with their
// ports as ibstat and `rdma link` would show them — the IB-mode HCA without IPoIB too, which
// no NIC list has — and soft RoCE is not taken for an adapter.
func TestRDMAAdapters(t *testing.T) {
	inv := collect(t, rdmaTree(t))
	if w := rdmaWarnings(inv); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	want := []RDMADevice{
		{Name: "mlx5_0", PCIAddress: "0000:3b:00.0", Driver: "mlx5_core", Model: "MT2910 Family [ConnectX-7]",
			HCAType: "MT4129", BoardID: "MT_0000000838", Firmware: "28.39.1002", NodeGUID: "b8ce:f603:00a1:b2c3",
			Ports: []RDMAPort{{Number: 1, State: "ACTIVE", PhysicalState: "LinkUp", Rate: "400 Gb/sec (4X NDR)", RateGbps: 400,
				LinkLayer: "InfiniBand", LID: "0x1a"}}},
		{Name: "mlx5_2", PCIAddress: "0000:5e:00.0", Driver: "mlx5_core", Model: "MT2892 Family [ConnectX-6 Dx]",
			HCAType: "MT4125", BoardID: "MT_0000000359", Firmware: "22.36.1010", NodeGUID: "0c42:a103:0065:4321",
			Ports: []RDMAPort{{Number: 1, State: "ACTIVE", PhysicalState: "LinkUp", Rate: "100 Gb/sec (4X EDR)", RateGbps: 100,
				LinkLayer: "Ethernet", Netdev: "ens2f0np0"}}},
		{Name: "mlx5_10", PCIAddress: "0000:3c:00.0", Driver: "mlx5_core", Model: "MT2910 Family [ConnectX-7]",
			HCAType: "MT4129", BoardID: "MT_0000000838", Firmware: "28.39.1002", NodeGUID: "b8ce:f603:00a1:b2d4",
			Ports: []RDMAPort{{Number: 1, State: "DOWN", PhysicalState: "Disabled", Rate: "10 Gb/sec (4X SDR)", RateGbps: 10,
				LinkLayer: "InfiniBand", LID: "0x0", Netdev: "ib1"}}},
		{Name: "mlx5_bond_0", PCIAddress: "0000:86:00.0", Driver: "mlx5_core", Model: "MT2892 Family [ConnectX-6 Dx]",
			HCAType: "MT4125", BoardID: "MT_0000000359", Firmware: "22.36.1010", NodeGUID: "0c42:a103:0065:8765",
			Ports: []RDMAPort{{Number: 1, State: "ACTIVE", PhysicalState: "LinkUp", Rate: "200 Gb/sec (4X HDR)", RateGbps: 200,
				LinkLayer: "Ethernet", Netdev: "bond0"}}},
	}
	if !reflect.DeepEqual(inv.RDMA, want) {
		t.Errorf("RDMA:\n got %+v\nwant %+v", inv.RDMA, want)
	}
	// The IB-mode HCA without IPoIB is in no NIC list: the RDMA list is where it shows.
	for _, n := range inv.NICs {
		if n.PCIAddress == "0000:3b:00.0" {
			t.Errorf("a NIC on the IB HCA without IPoIB: %+v", n)
		}
	}

	out := table(t, inv)
	for _, w := range []struct{ prefix, want string }{
		{"mlx5_0 ", "0000:3b:00.0 MT2910 Family [ConnectX-7] mlx5_core 28.39.1002 b8ce:f603:00a1:b2c3 1 InfiniBand ACTIVE LinkUp - 400 Gb/sec (4X NDR)"},
		{"mlx5_2 ", "0000:5e:00.0 MT2892 Family [ConnectX-6 Dx] mlx5_core 22.36.1010 0c42:a103:0065:4321 1 Ethernet ACTIVE LinkUp ens2f0np0 100 Gb/sec (4X EDR)"},
		{"mlx5_10 ", "1 InfiniBand DOWN Disabled ib1 10 Gb/sec (4X SDR)"},
	} {
		if l := strings.Join(strings.Fields(lineOf(out, w.prefix)), " "); !strings.HasSuffix(l, w.want) {
			t.Errorf("table row of %s: %q, want it to end %q\n%s", w.prefix, l, w.want, out)
		}
	}
	if strings.Contains(out, "softroce0") || strings.Contains(out, "sroce0") || strings.Contains(out, "siw0") {
		t.Errorf("the table lists soft RoCE as an adapter:\n%s", out)
	}

	// The JSON, as the hub reads it.
	var buf bytes.Buffer
	if err := WriteJSON(&buf, inv); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		RDMA []map[string]any `json:"rdma"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.RDMA) != 4 {
		t.Fatalf("JSON rdma has %d devices, want 4:\n%s", len(doc.RDMA), buf.String())
	}
	d := doc.RDMA[0]
	port := d["ports"].([]any)[0].(map[string]any)
	for k, v := range map[string]any{"name": "mlx5_0", "pci_address": "0000:3b:00.0", "driver": "mlx5_core",
		"firmware": "28.39.1002", "node_guid": "b8ce:f603:00a1:b2c3"} {
		if d[k] != v {
			t.Errorf("JSON rdma[0].%s = %v, want %v", k, d[k], v)
		}
	}
	for k, v := range map[string]any{"number": 1.0, "state": "ACTIVE", "physical_state": "LinkUp",
		"rate": "400 Gb/sec (4X NDR)", "rate_gbps": 400.0, "link_layer": "InfiniBand"} {
		if port[k] != v {
			t.Errorf("JSON rdma[0].ports[0].%s = %v, want %v", k, port[k], v)
		}
	}
	if _, ok := port["netdev"]; ok {
		t.Errorf("JSON: the IB port without IPoIB has a netdev: %v", port)
	}
	if p := doc.RDMA[1]["ports"].([]any)[0].(map[string]any); p["netdev"] != "ens2f0np0" || p["link_layer"] != "Ethernet" {
		t.Errorf("JSON: the RoCE port = %v, want its netdev ens2f0np0", p)
	}
}

// TestIPoIBChildrenAreNotNICs: an IPoIB P_Key child sits under its HCA's PCI function as the
// port's own interface does, whatever its name; the NIC list has the port's interface once,
// not its partitions as more hardware NICs with the same PCI address.
func TestIPoIBChildrenAreNotNICs(t *testing.T) {
	inv := collect(t, rdmaTree(t))
	var onHCA []string
	for _, n := range inv.NICs {
		if n.PCIAddress == "0000:3c:00.0" {
			onHCA = append(onHCA, n.Name)
		}
	}
	if !slices.Equal(onHCA, []string{"ib1"}) {
		t.Errorf("NICs on the HCA 0000:3c:00.0: %q, want ib1 only (ib1.8001 and ib-storage are its P_Key children)", onHCA)
	}
	if out := table(t, inv); strings.Contains(out, "ib1.8001") || strings.Contains(out, "ib-storage") {
		t.Errorf("the table lists a P_Key child:\n%s", out)
	}
}

// A machine without RDMA has an empty list, never a missing one, and no warning.
func TestRDMANone(t *testing.T) {
	inv := collect(t, tree(t, nil, nil))
	var buf bytes.Buffer
	if err := WriteJSON(&buf, inv); err != nil {
		t.Fatal(err)
	}
	if inv.RDMA == nil || !strings.Contains(buf.String(), `"rdma": []`) || len(rdmaWarnings(inv)) != 0 {
		t.Errorf("RDMA = %#v, warnings %q; JSON:\n%s", inv.RDMA, inv.Warnings, buf.String())
	}
}

// rdmaWarnings are the warnings of the RDMA step (a hand-made tree has no DMI, which is
// warned of too).
func rdmaWarnings(inv *Inventory) []string {
	var out []string
	for _, w := range inv.Warnings {
		if strings.HasPrefix(w, "rdma") {
			out = append(out, w)
		}
	}
	return out
}

func TestParseRDMARate(t *testing.T) {
	for in, want := range map[string]float64{
		"400 Gb/sec (4X NDR)": 400, "2.5 Gb/sec (1X SDR)": 2.5, "200 Gb/sec (2X NDR)": 200, "": 0, "invalid": 0,
	} {
		if got := ParseRDMARate(in); got != want {
			t.Errorf("ParseRDMARate(%q) = %v, want %v", in, got, want)
		}
	}
}
