// Translation unit that owns the precompiled header (scenic_pch).
#include "scenic/common_lib/pch.h"
