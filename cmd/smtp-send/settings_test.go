package main

// The exit statuses the tests of the binary expect (sysexits.h), as
// smtp-send documents them; internal/sender returns them.
const (
	exOK     = 0
	exUsage  = 64 // EX_USAGE: bad flags or arguments
	exIOErr  = 74 // EX_IOERR: the spool could not be read or written
	exConfig = 78 // EX_CONFIG: bad or missing setting, no or unsafe spool directory
)
