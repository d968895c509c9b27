package main

import "syscall"

// childProcAttr puts a child in a process group of its own. Should the demo
// be killed outright, the child gets SIGTERM and stops cleanly anyway.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
