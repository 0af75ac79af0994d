#include "scenic/common_lib/pch.h"
