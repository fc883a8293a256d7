/* Build-only stand-in (see IOHIDLib.h): nothing of it is used. */
#pragma once
