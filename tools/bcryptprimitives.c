/* A stand-in for Windows' bcryptprimitives.dll, for wine 8.0, which lacks
 * it. Rust's standard library (>= 1.78) imports ProcessPrng from there, so
 * without this DLL no Rust program starts under wine ("Library
 * bcryptprimitives.dll not found"). ProcessPrng fills the buffer from
 * RtlGenRandom (advapi32's SystemFunction036), wine's system random
 * source. Built and installed by `make test-windows`; only ever used
 * inside the wine prefix under target/. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    /* Documented to always succeed. */
    return TRUE;
}
