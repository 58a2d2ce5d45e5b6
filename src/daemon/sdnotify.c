#include "sdnotify.h"

#include <stdio.h>
#include <time.h>

#include "config_build.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

void
sdnotify_ready(void)
{
	sd_notify(0, "READY=1\nSTATUS=accepting callbacks");
}

void
sdnotify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void
sdnotify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void
sdnotify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

void
sdnotify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

uint64_t
sdnotify_watchdog_usec(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}
#else
void
sdnotify_ready(void)
{
}
void
sdnotify_reloading(void)
{
}
void
sdnotify_stopping(void)
{
}
void
sdnotify_watchdog(void)
{
}
void
sdnotify_status(const char *status)
{
	(void)status;
}
uint64_t
sdnotify_watchdog_usec(void)
{
	return 0;
}
#endif
