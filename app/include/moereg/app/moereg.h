// SPDX-License-Identifier: Apache-2.0
// moereg.h - the whole application API of libmoereg (find_package(moereg), target
// moereg::moereg). Every function returns a result (result.h) and throws nothing.
#pragma once

#include "moereg/app/bench.h"
#include "moereg/app/convert.h"
#include "moereg/app/experts.h"
#include "moereg/app/inspect.h"
#include "moereg/app/layout_stream.h"
#include "moereg/app/log.h"
#include "moereg/app/lora.h"
#include "moereg/app/mapped.h"
#include "moereg/app/model.h"
#include "moereg/app/moe.h"
#include "moereg/app/plugins.h"
#include "moereg/app/result.h"
#include "moereg/app/signals.h"
#include "moereg/app/synth.h"
#include "moereg/app/verify.h"
