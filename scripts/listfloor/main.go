// Command listfloor is the least a listing of the queue can cost, for
// scripts/bench-list: for each directory given, it reads the names
// (getdents), then, with as many goroutines as GOMAXPROCS, opens each
// file relative to the open directory (openat with O_RDONLY|O_NOFOLLOW|
// O_NONBLOCK|O_CLOEXEC), reads its first 4 KiB with one read and closes
// it: three system calls a file, what any listing that shows the envelope
// and the state of every message must at least do. It parses nothing,
// sorts nothing and writes only a count. Built static, with only the os,
// runtime, sync and syscall packages, it is what smtp-send --list is
// measured against.
//
// Usage: listfloor DIR... It prints "N files, B bytes" and exits 1 on an
// error of reading a directory; files that cannot be opened are counted
// apart.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

func main() {
	var files, bytes, failed int64
	var mu sync.Mutex
	workers := runtime.GOMAXPROCS(0)
	for _, dir := range os.Args[1:] {
		d, err := os.Open(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listfloor:", err)
			os.Exit(1)
		}
		names, err := d.Readdirnames(-1)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listfloor:", err)
			os.Exit(1)
		}
		dfd := int(d.Fd())
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				var n, b, f int64
				for i := w; i < len(names); i += workers {
					fd, err := syscall.Openat(dfd, names[i], syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
					if err != nil {
						f++
						continue
					}
					r, _ := syscall.Read(fd, buf)
					syscall.Close(fd)
					n++
					b += int64(max(r, 0))
				}
				mu.Lock()
				files, bytes, failed = files+n, bytes+b, failed+f
				mu.Unlock()
			}()
		}
		wg.Wait()
		d.Close()
	}
	fmt.Printf("%d files, %d bytes, %d not opened\n", files, bytes, failed)
}
