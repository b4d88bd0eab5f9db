// SPDX-License-Identifier: Apache-2.0
// export.h - MOEREG_API marks what libmoereg.so exports: the application API in this
// directory and nothing else (every other symbol is hidden, so the engine's internals can
// change between releases without breaking programs built against the library).
#pragma once

#define MOEREG_API __attribute__((visibility("default")))
