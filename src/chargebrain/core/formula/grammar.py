"""Grammar of the formula language and the (lazily built, shared) LALR parser.

Precedence, highest first (as in C, with `^` between unary and multiplicative):
unary `! - +`, `^` (right-assoc), `* / %`, `+ -`, `< <= > >=`, `== !=`, `&`, `|`, `&&`,
`||`, `?:` (right-assoc). Chains of one precedence level come out as one flat node so that
long sums do not nest. This module must never evaluate anything; it only parses text.
"""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

GRAMMAR = r"""
?start: ternary

?ternary: lor
        | lor QMARK ternary COLON ternary -> cond

?lor: land (OROR land)*
?land: bor (ANDAND bor)*
?bor: band (PIPE band)*
?band: eq (AMP eq)*
?eq: rel ((EQ | NE) rel)*
?rel: sum ((LE | GE | LT | GT) sum)*
?sum: product ((PLUS | MINUS) product)*
?product: power ((STAR | SLASH | PERCENT) power)*
?power: unary
      | unary CARET power -> pow
?unary: atom
      | (MINUS | PLUS | BANG) unary -> neg

?atom: NUMBER -> number
     | STRING -> string
     | NAME LPAR args? RPAR -> call
     | NAME -> var
     | LPAR ternary RPAR -> group

args: ternary (COMMA ternary)*

NUMBER: /0[xX][0-9a-fA-F]+|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?/
STRING: /"([^"\\\n]|\\.)*"/
NAME: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*/

OROR: "||"
ANDAND: "&&"
PIPE: "|"
AMP: "&"
EQ: "=="
NE: "!="
LE: "<="
GE: ">="
LT: "<"
GT: ">"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"
CARET: "^"
BANG: "!"
QMARK: "?"
COLON: ":"
LPAR: "("
RPAR: ")"
COMMA: ","

%ignore /[ \t\r\n]+/
"""


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The shared LALR parser (built on first use; parsing is reentrant)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)
