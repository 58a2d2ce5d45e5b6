/* sd_notify, wrapped so the daemon builds without libsystemd. */
#ifndef PAYRELAY_SDNOTIFY_H
#define PAYRELAY_SDNOTIFY_H

#include <stdint.h>

void sdnotify_ready(void);
void sdnotify_reloading(void);
void sdnotify_stopping(void);
void sdnotify_watchdog(void);
void sdnotify_status(const char *status);
/* The watchdog interval in microseconds, or 0 when none is asked for. */
uint64_t sdnotify_watchdog_usec(void);

#endif
