"""Budgeted prompt assembly."""

from ctxkit.assembly.assembler import Assembler, ChunkOrder, assemble, group_turns
from ctxkit.assembly.packing import greedy_pack, knapsack_pack, pack
from ctxkit.assembly.prompt import AssembledPrompt, AuditRecord, SectionReport

__all__ = [
    "AssembledPrompt",
    "Assembler",
    "AuditRecord",
    "ChunkOrder",
    "SectionReport",
    "assemble",
    "greedy_pack",
    "group_turns",
    "knapsack_pack",
    "pack",
]
