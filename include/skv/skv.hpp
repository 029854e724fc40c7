//! @file skv.hpp
//! Umbrella header: the cache, every policy, the presets and their list.
#pragma once

#include <skv/args.hpp>
#include <skv/concepts.hpp>
#include <skv/config.hpp>
#include <skv/error.hpp>
#include <skv/kv_cache.hpp>
#include <skv/ledger.hpp>
#include <skv/numeric.hpp>
#include <skv/policy.hpp>
#include <skv/preset_list.hpp>
#include <skv/presets.hpp>
#include <skv/tensor.hpp>
