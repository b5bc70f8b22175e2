//go:build !linux

package sysimage

func freeBytes(string) int64 { return -1 }
