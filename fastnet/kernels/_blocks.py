"""Parallel kernels that call their block function by address, so numba compiles it once.

A dense kernel is a loop over blocks of rows (``prange`` above a size, ``range`` below) that
calls a block function holding the GEMM. Called the usual way, numba links the block's code
into every layer the parallel loop is lowered to (the loop body, two gufunc wrappers, the
kernel) and LLVM optimises and emits it again in each: about 2 s of a dense kernel's 3.7-4.4 s
cold compile (0.45-0.55 s a copy), against 0.4 s of LLVM work for the block itself.

Here the kernel takes the address of the block's compiled code as an argument and calls it
through numba's first-class function type, so the loop is compiled without the block. The
address is a run-time value, so the kernel still goes to numba's cache (an address baked in
as a constant would stop it from being cached), and each process looks it up in its own block
dispatcher. That also means every call runs the one compiled copy of the block.
"""
from __future__ import annotations

from functools import partial

from numba import types
from numba.core import cgutils
from numba.core.typing.typeof import Purpose, typeof
from numba.extending import intrinsic


def argument_types(args) -> tuple:
    """The numba types of ``args`` as a dispatcher types a call's arguments (without touching any dispatcher)."""
    return tuple(typeof(a, Purpose.argument) for a in args)


@intrinsic
def block_at(typingctx, address, args):
    """Inside a kernel: the compiled block at ``address`` (int64), typed as taking the tuple
    ``args`` and then an int64 block index, returning nothing."""
    if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
        return None
    fn_type = types.FunctionType(types.void(*args.types, types.int64))

    def codegen(context, builder, signature, llargs):
        fn = cgutils.create_struct_proxy(fn_type)(context, builder)  # zero-filled: no C wrapper, no Python object
        fn.jit_addr = builder.inttoptr(llargs[0], context.get_value_type(types.voidptr))
        return fn._getvalue()
    return fn_type(address, args), codegen


class Blocked:
    """A kernel ``name(*args)`` made of a loop (``kernel(address, *args)``, compiled with
    ``block_at``) and the block it calls (``block(*args, block_index)``).

    Calling it looks up the block compiled for these argument types (compiling it the first
    time) and runs the loop; ``bind(*args)`` does the lookup once, for a call made every step.
    """

    def __init__(self, name: str, kernel, block):
        self.__name__ = self.__qualname__ = name
        self.__doc__ = kernel.__doc__
        self.kernel, self.block = kernel, block
        self._addresses: dict[tuple, int] = {}  # argument types -> the block's entry point

    def address(self, args) -> int:
        """The entry point of the block compiled for ``args`` (compiled or loaded from the cache)."""
        arg_types = argument_types(args)
        found = self._addresses.get(arg_types)
        if found is None:
            signature = self.compile_units(arg_types)[0][1]
            self.block.compile(signature)
            compiled = self.block.overloads[signature]
            found = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
            self._addresses[arg_types] = found
        return found

    def compile_units(self, arg_types: tuple) -> list[tuple]:
        """(dispatcher, argument types) of what a call with ``arg_types`` compiles: the block, the loop."""
        return [(self.block, (*arg_types, types.int64)), (self.kernel, (types.int64, *arg_types))]

    def __call__(self, *args) -> None:
        self.kernel(self.address(args), *args)

    def bind(self, *args) -> partial:
        return partial(self.kernel, self.address(args), *args)

    def __reduce__(self):  # the addresses belong to this process: another looks them up anew
        return Blocked, (self.__name__, self.kernel, self.block)

    def __repr__(self) -> str:
        return f"<fastnet kernel {self.__name__}: {self.kernel.__name__} calling {self.block.__name__}>"


def bind(kernel, *args) -> partial:
    """``partial(kernel, *args)``, with a ``Blocked`` kernel's block looked up now rather than per call."""
    return kernel.bind(*args) if isinstance(kernel, Blocked) else partial(kernel, *args)
