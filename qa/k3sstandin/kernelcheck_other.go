//go:build !linux

package main

import "context"

var kernelRequests []string

func kernelCheck(context.Context, string, string) string {
	return "standin-kernel-check-failed not on Linux"
}
