package config

import (
	"strings"
	"testing"
)

// TestValidateURLPasswordParts: no part of a password, whatever it holds
// (#, /, ?, @), shows in a validation error or warning about the URL that
// carries it: cluster.server, mirror endpoints, time servers, K3s values.
func TestValidateURLPasswordParts(t *testing.T) {
	base := header + "role: server\ncluster: {init: true}\n"
	for _, pw := range []string{"SECRET#LEAK", "SECRET/LEAK", "SECRET?LEAK", "SECRET@LEAK", "12#LEAK", "12/LEAK"} {
		for _, doc := range []string{
			header + "role: agent\ncluster: {server: 'https://bob:" + pw + "@cp.example.com:6443', token: t}\n",
			header + "role: server\ncluster: {init: true, server: 'https://bob:" + pw + "@cp.example.com:6443'}\n",
			base + "registries: {mirrors: {docker.io: {endpoint: ['https://bob:" + pw + "@mirror.example.com']}}}\n",
			base + "registries: {mirrors: {docker.io: {endpoint: ['https://bob:" + pw + "@mirror.example.com:x']}}}\n",
			base + "time: {servers: ['ntp://bob:" + pw + "@ntp.example.com', 'bob:" + pw + "@ntp.example.com']}\n",
			base + "k3s: {node-ip: 'http://bob:" + pw + "@proxy.example.com:3128'}\n",
			base + "k3s: {node-ip: 'http://bob:" + pw + "@proxy.example.com:3128, 10.0.0.1'}\n",
			base + "k3s: {etcd-s3-timeout: 'http://bob:" + pw + "@proxy.example.com:3128'}\n",
			base + "k3s: {etcd-s3-proxy: 'http://bob:" + pw + "@proxy.example.com:3128'}\n",
		} {
			_, warns, err := Check([]byte(doc))
			all := strings.Join(warns, "\n")
			if err != nil {
				all += "\n" + err.Error()
			}
			if strings.Contains(all, "SECRET") || strings.Contains(all, "LEAK") {
				t.Errorf("%s: shows part of the password:\n%s", pw, all)
			} else {
				t.Logf("%s", all)
			}
		}
	}
}
