//go:build !linux

package main

func checkOverlaySnapshotter(string) error { return nil }
