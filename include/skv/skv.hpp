//! @file skv.hpp
//! Umbrella header: the cache, every policy and the presets.
#pragma once

#include <skv/concepts.hpp>
#include <skv/config.hpp>
#include <skv/error.hpp>
#include <skv/kv_cache.hpp>
#include <skv/ledger.hpp>
#include <skv/numeric.hpp>
#include <skv/presets.hpp>
#include <skv/tensor.hpp>
