/* ut_wait.h -- the unit tests' one way to wait for another thread or a
 * peer: poll a condition every few milliseconds until it holds or a
 * deadline passes, never a fixed sleep standing for the condition.
 * UT_WAIT_UNTIL(cond, timeout_ms) evaluates to whether cond held. */
#ifndef HSCALE_TESTS_UT_WAIT_H
#define HSCALE_TESTS_UT_WAIT_H

#include <stdbool.h>
#include <unistd.h>

#define UT_WAIT_STEP_US 2000

#define UT_WAIT_UNTIL(cond, timeout_ms)                                              \
    ({                                                                               \
        bool ut_held_ = false;                                                       \
        for (long ut_i_ = 0; ut_i_ <= (long)(timeout_ms) * 1000 / UT_WAIT_STEP_US; ut_i_++) { \
            if ((cond)) {                                                            \
                ut_held_ = true;                                                     \
                break;                                                               \
            }                                                                        \
            usleep(UT_WAIT_STEP_US);                                                 \
        }                                                                            \
        ut_held_;                                                                    \
    })

#endif
