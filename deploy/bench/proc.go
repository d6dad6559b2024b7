package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The figures below read /proc: the benchmark runs on Linux, as the
// sandbox does.

// clockTick is the unit of utime and stime in /proc/<pid>/stat
// (USER_HZ, 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

// clusterCommands are the sandbox cluster's processes; platformCommands
// the platform's.
var (
	clusterCommands  = []string{"kube-apiserver", "etcd", "kwok", "kube-controller", "kube-scheduler"}
	platformCommands = []string{"api", "audit", "gateway", "orchestrator"}
)

// CPU is the processor time spent during a measurement, by whom, and the
// wall time it lasted.
type CPU struct {
	Cluster, Platform, Wall time.Duration
}

type cpuMeter struct {
	start             time.Time
	cluster, platform map[int]time.Duration
}

func startCPU() *cpuMeter {
	c, p := cpuByGroup()
	return &cpuMeter{start: time.Now(), cluster: c, platform: p}
}

// stop returns the CPU time each group used since startCPU, counting the
// processes that ran at both ends.
func (m *cpuMeter) stop() CPU {
	c, p := cpuByGroup()
	used := func(before, after map[int]time.Duration) time.Duration {
		var d time.Duration
		for pid, t := range after {
			if t0, ok := before[pid]; ok {
				d += t - t0
			}
		}
		return d
	}
	return CPU{Cluster: used(m.cluster, c), Platform: used(m.platform, p), Wall: time.Since(m.start)}
}

// cpuByGroup reads the CPU time of every cluster and platform process.
func cpuByGroup() (cluster, platform map[int]time.Duration) {
	cluster, platform = map[int]time.Duration{}, map[int]time.Duration{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		var into map[int]time.Duration
		switch {
		case hasPrefix(name, clusterCommands):
			into = cluster
		case slices.Contains(platformCommands, name):
			into = platform
		default:
			continue
		}
		if t, err := processCPU(pid); err == nil {
			into[pid] = t
		}
	}
	return cluster, platform
}

func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// processCPU is the user and system time of pid.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it (utime and stime are fields 14 and 15).
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, nil
}

// residentBytes is the resident memory (VmRSS) of pid.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// orchestratorsRSS is the resident memory of the running orchestrators,
// summed.
func (r *run) orchestratorsRSS() (int64, error) {
	var sum int64
	for _, cmd := range r.stack.Orchestrators {
		if cmd.Process == nil {
			continue
		}
		rss, err := residentBytes(cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("cannot read an orchestrator's memory: %w", err)
		}
		sum += rss
	}
	return sum, nil
}
