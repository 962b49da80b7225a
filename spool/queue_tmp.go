package spool

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// CleanTmp removes regular files in tmp/ last modified more than maxAge
// before now and returns their names. tmp/ holds files being written (a
// receiver's message, a sender's state); one older than any session's
// deadline was left by a killed process. This is the one place where the
// sender looks at a file's mtime: a temporary file has no other clock.
// Errors on single files are returned joined, after the other files were
// handled.
func (s *Spool) CleanTmp(maxAge time.Duration, now time.Time) ([]string, error) {
	dir := s.Path(TmpDir)
	d, err := openDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // renamed into place meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now.Sub(fi.ModTime()) <= maxAge {
			continue
		}
		if err := os.Remove(s.Path(TmpDir, e.Name())); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("spool: %w", err))
			}
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
