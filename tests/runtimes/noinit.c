/*
 * noinit.c -- a library that forgot libffi_init(): loading it must fail
 * with a readable message.
 */

int
noinit_answer(void)
{
    return 42;
}
