"""Provider payloads (bytes) decoded straight into Arrow columns.

A small hand-written JSON scanner walks Yahoo chart and Alpha Vantage payloads once, without
the GIL, validating the whole document (strings, escapes, UTF-8, number grammar) and writing
numbers into growable C buffers with byte-per-row validity, which become Arrow buffers at the
end. Floats are parsed with the Clinger fast path and the Eisel-Lemire algorithm (correctly
rounded, equal to ``float()``), falling back to ``strtod`` only for long or extreme literals.

The pure-Python twin ``stockbatch._py.decode`` is the specification. Whenever a payload
leaves the fast path's expectations (an error answer, a value of an unexpected type, escapes
in a key, lengths that disagree) the twin decides, so both backends always agree; syntax
errors are reported here with their exact byte position.
"""

from libc.stdint cimport int64_t, uint64_t, uint8_t, int32_t, UINT64_MAX
from libc.stdlib cimport malloc, realloc, free, strtod
from libc.string cimport memcmp, memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeUTF8

import json

import pyarrow as pa
import pyarrow.compute as pc

from stockbatch._errors import DecodeError
from stockbatch._py import decode as _twin
from stockbatch.schema import BARS

__all__ = ["decode_yahoo_chart", "decode_alphavantage", "decode_yahoo_quote",
           "events_from_metadata"]

decode_yahoo_quote = _twin.decode_yahoo_quote  # quotes are tiny: json is fine there
events_from_metadata = _twin.events_from_metadata

cdef extern from *:
    """
    #include <stdint.h>
    static inline void sb_mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
        unsigned __int128 r = (unsigned __int128)a * b;
        *hi = (uint64_t)(r >> 64);
        *lo = (uint64_t)r;
    }
    static inline int sb_clz64(uint64_t x) { return __builtin_clzll(x); }
    static inline int sb_ctz64(uint64_t x) { return __builtin_ctzll(x); }
    /* SWAR constants (beyond int64, so kept out of Cython's literal handling) */
    static const uint64_t SB_HI_NIBBLES = 0xF0F0F0F0F0F0F0F0ULL;
    static const uint64_t SB_SIXES = 0x0606060606060606ULL;
    static const uint64_t SB_THREES = 0x3333333333333333ULL;
    static const uint64_t SB_ZEROS = 0x3030303030303030ULL;
    static const uint64_t SB_MASK = 0x000000FF000000FFULL;
    static const uint64_t SB_MUL1 = 0x000F424000000064ULL;  /* 100 + (1000000 << 32) */
    static const uint64_t SB_MUL2 = 0x0000271000000001ULL;  /* 1 + (10000 << 32) */
    /* 128-bit truncated powers of five, 5**-342 .. 5**308 (fast_float's table). */
    static const uint64_t SB_POW5[1302] = {
    0xeef453d6923bd65aULL, 0x113faa2906a13b3fULL, 0x9558b4661b6565f8ULL, 0x4ac7ca59a424c507ULL,
    0xbaaee17fa23ebf76ULL, 0x5d79bcf00d2df649ULL, 0xe95a99df8ace6f53ULL, 0xf4d82c2c107973dcULL,
    0x91d8a02bb6c10594ULL, 0x79071b9b8a4be869ULL, 0xb64ec836a47146f9ULL, 0x9748e2826cdee284ULL,
    0xe3e27a444d8d98b7ULL, 0xfd1b1b2308169b25ULL, 0x8e6d8c6ab0787f72ULL, 0xfe30f0f5e50e20f7ULL,
    0xb208ef855c969f4fULL, 0xbdbd2d335e51a935ULL, 0xde8b2b66b3bc4723ULL, 0xad2c788035e61382ULL,
    0x8b16fb203055ac76ULL, 0x4c3bcb5021afcc31ULL, 0xaddcb9e83c6b1793ULL, 0xdf4abe242a1bbf3dULL,
    0xd953e8624b85dd78ULL, 0xd71d6dad34a2af0dULL, 0x87d4713d6f33aa6bULL, 0x8672648c40e5ad68ULL,
    0xa9c98d8ccb009506ULL, 0x680efdaf511f18c2ULL, 0xd43bf0effdc0ba48ULL, 0x0212bd1b2566def2ULL,
    0x84a57695fe98746dULL, 0x014bb630f7604b57ULL, 0xa5ced43b7e3e9188ULL, 0x419ea3bd35385e2dULL,
    0xcf42894a5dce35eaULL, 0x52064cac828675b9ULL, 0x818995ce7aa0e1b2ULL, 0x7343efebd1940993ULL,
    0xa1ebfb4219491a1fULL, 0x1014ebe6c5f90bf8ULL, 0xca66fa129f9b60a6ULL, 0xd41a26e077774ef6ULL,
    0xfd00b897478238d0ULL, 0x8920b098955522b4ULL, 0x9e20735e8cb16382ULL, 0x55b46e5f5d5535b0ULL,
    0xc5a890362fddbc62ULL, 0xeb2189f734aa831dULL, 0xf712b443bbd52b7bULL, 0xa5e9ec7501d523e4ULL,
    0x9a6bb0aa55653b2dULL, 0x47b233c92125366eULL, 0xc1069cd4eabe89f8ULL, 0x999ec0bb696e840aULL,
    0xf148440a256e2c76ULL, 0xc00670ea43ca250dULL, 0x96cd2a865764dbcaULL, 0x380406926a5e5728ULL,
    0xbc807527ed3e12bcULL, 0xc605083704f5ecf2ULL, 0xeba09271e88d976bULL, 0xf7864a44c633682eULL,
    0x93445b8731587ea3ULL, 0x7ab3ee6afbe0211dULL, 0xb8157268fdae9e4cULL, 0x5960ea05bad82964ULL,
    0xe61acf033d1a45dfULL, 0x6fb92487298e33bdULL, 0x8fd0c16206306babULL, 0xa5d3b6d479f8e056ULL,
    0xb3c4f1ba87bc8696ULL, 0x8f48a4899877186cULL, 0xe0b62e2929aba83cULL, 0x331acdabfe94de87ULL,
    0x8c71dcd9ba0b4925ULL, 0x9ff0c08b7f1d0b14ULL, 0xaf8e5410288e1b6fULL, 0x07ecf0ae5ee44dd9ULL,
    0xdb71e91432b1a24aULL, 0xc9e82cd9f69d6150ULL, 0x892731ac9faf056eULL, 0xbe311c083a225cd2ULL,
    0xab70fe17c79ac6caULL, 0x6dbd630a48aaf406ULL, 0xd64d3d9db981787dULL, 0x092cbbccdad5b108ULL,
    0x85f0468293f0eb4eULL, 0x25bbf56008c58ea5ULL, 0xa76c582338ed2621ULL, 0xaf2af2b80af6f24eULL,
    0xd1476e2c07286faaULL, 0x1af5af660db4aee1ULL, 0x82cca4db847945caULL, 0x50d98d9fc890ed4dULL,
    0xa37fce126597973cULL, 0xe50ff107bab528a0ULL, 0xcc5fc196fefd7d0cULL, 0x1e53ed49a96272c8ULL,
    0xff77b1fcbebcdc4fULL, 0x25e8e89c13bb0f7aULL, 0x9faacf3df73609b1ULL, 0x77b191618c54e9acULL,
    0xc795830d75038c1dULL, 0xd59df5b9ef6a2417ULL, 0xf97ae3d0d2446f25ULL, 0x4b0573286b44ad1dULL,
    0x9becce62836ac577ULL, 0x4ee367f9430aec32ULL, 0xc2e801fb244576d5ULL, 0x229c41f793cda73fULL,
    0xf3a20279ed56d48aULL, 0x6b43527578c1110fULL, 0x9845418c345644d6ULL, 0x830a13896b78aaa9ULL,
    0xbe5691ef416bd60cULL, 0x23cc986bc656d553ULL, 0xedec366b11c6cb8fULL, 0x2cbfbe86b7ec8aa8ULL,
    0x94b3a202eb1c3f39ULL, 0x7bf7d71432f3d6a9ULL, 0xb9e08a83a5e34f07ULL, 0xdaf5ccd93fb0cc53ULL,
    0xe858ad248f5c22c9ULL, 0xd1b3400f8f9cff68ULL, 0x91376c36d99995beULL, 0x23100809b9c21fa1ULL,
    0xb58547448ffffb2dULL, 0xabd40a0c2832a78aULL, 0xe2e69915b3fff9f9ULL, 0x16c90c8f323f516cULL,
    0x8dd01fad907ffc3bULL, 0xae3da7d97f6792e3ULL, 0xb1442798f49ffb4aULL, 0x99cd11cfdf41779cULL,
    0xdd95317f31c7fa1dULL, 0x40405643d711d583ULL, 0x8a7d3eef7f1cfc52ULL, 0x482835ea666b2572ULL,
    0xad1c8eab5ee43b66ULL, 0xda3243650005eecfULL, 0xd863b256369d4a40ULL, 0x90bed43e40076a82ULL,
    0x873e4f75e2224e68ULL, 0x5a7744a6e804a291ULL, 0xa90de3535aaae202ULL, 0x711515d0a205cb36ULL,
    0xd3515c2831559a83ULL, 0x0d5a5b44ca873e03ULL, 0x8412d9991ed58091ULL, 0xe858790afe9486c2ULL,
    0xa5178fff668ae0b6ULL, 0x626e974dbe39a872ULL, 0xce5d73ff402d98e3ULL, 0xfb0a3d212dc8128fULL,
    0x80fa687f881c7f8eULL, 0x7ce66634bc9d0b99ULL, 0xa139029f6a239f72ULL, 0x1c1fffc1ebc44e80ULL,
    0xc987434744ac874eULL, 0xa327ffb266b56220ULL, 0xfbe9141915d7a922ULL, 0x4bf1ff9f0062baa8ULL,
    0x9d71ac8fada6c9b5ULL, 0x6f773fc3603db4a9ULL, 0xc4ce17b399107c22ULL, 0xcb550fb4384d21d3ULL,
    0xf6019da07f549b2bULL, 0x7e2a53a146606a48ULL, 0x99c102844f94e0fbULL, 0x2eda7444cbfc426dULL,
    0xc0314325637a1939ULL, 0xfa911155fefb5308ULL, 0xf03d93eebc589f88ULL, 0x793555ab7eba27caULL,
    0x96267c7535b763b5ULL, 0x4bc1558b2f3458deULL, 0xbbb01b9283253ca2ULL, 0x9eb1aaedfb016f16ULL,
    0xea9c227723ee8bcbULL, 0x465e15a979c1cadcULL, 0x92a1958a7675175fULL, 0x0bfacd89ec191ec9ULL,
    0xb749faed14125d36ULL, 0xcef980ec671f667bULL, 0xe51c79a85916f484ULL, 0x82b7e12780e7401aULL,
    0x8f31cc0937ae58d2ULL, 0xd1b2ecb8b0908810ULL, 0xb2fe3f0b8599ef07ULL, 0x861fa7e6dcb4aa15ULL,
    0xdfbdcece67006ac9ULL, 0x67a791e093e1d49aULL, 0x8bd6a141006042bdULL, 0xe0c8bb2c5c6d24e0ULL,
    0xaecc49914078536dULL, 0x58fae9f773886e18ULL, 0xda7f5bf590966848ULL, 0xaf39a475506a899eULL,
    0x888f99797a5e012dULL, 0x6d8406c952429603ULL, 0xaab37fd7d8f58178ULL, 0xc8e5087ba6d33b83ULL,
    0xd5605fcdcf32e1d6ULL, 0xfb1e4a9a90880a64ULL, 0x855c3be0a17fcd26ULL, 0x5cf2eea09a55067fULL,
    0xa6b34ad8c9dfc06fULL, 0xf42faa48c0ea481eULL, 0xd0601d8efc57b08bULL, 0xf13b94daf124da26ULL,
    0x823c12795db6ce57ULL, 0x76c53d08d6b70858ULL, 0xa2cb1717b52481edULL, 0x54768c4b0c64ca6eULL,
    0xcb7ddcdda26da268ULL, 0xa9942f5dcf7dfd09ULL, 0xfe5d54150b090b02ULL, 0xd3f93b35435d7c4cULL,
    0x9efa548d26e5a6e1ULL, 0xc47bc5014a1a6dafULL, 0xc6b8e9b0709f109aULL, 0x359ab6419ca1091bULL,
    0xf867241c8cc6d4c0ULL, 0xc30163d203c94b62ULL, 0x9b407691d7fc44f8ULL, 0x79e0de63425dcf1dULL,
    0xc21094364dfb5636ULL, 0x985915fc12f542e4ULL, 0xf294b943e17a2bc4ULL, 0x3e6f5b7b17b2939dULL,
    0x979cf3ca6cec5b5aULL, 0xa705992ceecf9c42ULL, 0xbd8430bd08277231ULL, 0x50c6ff782a838353ULL,
    0xece53cec4a314ebdULL, 0xa4f8bf5635246428ULL, 0x940f4613ae5ed136ULL, 0x871b7795e136be99ULL,
    0xb913179899f68584ULL, 0x28e2557b59846e3fULL, 0xe757dd7ec07426e5ULL, 0x331aeada2fe589cfULL,
    0x9096ea6f3848984fULL, 0x3ff0d2c85def7621ULL, 0xb4bca50b065abe63ULL, 0x0fed077a756b53a9ULL,
    0xe1ebce4dc7f16dfbULL, 0xd3e8495912c62894ULL, 0x8d3360f09cf6e4bdULL, 0x64712dd7abbbd95cULL,
    0xb080392cc4349decULL, 0xbd8d794d96aacfb3ULL, 0xdca04777f541c567ULL, 0xecf0d7a0fc5583a0ULL,
    0x89e42caaf9491b60ULL, 0xf41686c49db57244ULL, 0xac5d37d5b79b6239ULL, 0x311c2875c522ced5ULL,
    0xd77485cb25823ac7ULL, 0x7d633293366b828bULL, 0x86a8d39ef77164bcULL, 0xae5dff9c02033197ULL,
    0xa8530886b54dbdebULL, 0xd9f57f830283fdfcULL, 0xd267caa862a12d66ULL, 0xd072df63c324fd7bULL,
    0x8380dea93da4bc60ULL, 0x4247cb9e59f71e6dULL, 0xa46116538d0deb78ULL, 0x52d9be85f074e608ULL,
    0xcd795be870516656ULL, 0x67902e276c921f8bULL, 0x806bd9714632dff6ULL, 0x00ba1cd8a3db53b6ULL,
    0xa086cfcd97bf97f3ULL, 0x80e8a40eccd228a4ULL, 0xc8a883c0fdaf7df0ULL, 0x6122cd128006b2cdULL,
    0xfad2a4b13d1b5d6cULL, 0x796b805720085f81ULL, 0x9cc3a6eec6311a63ULL, 0xcbe3303674053bb0ULL,
    0xc3f490aa77bd60fcULL, 0xbedbfc4411068a9cULL, 0xf4f1b4d515acb93bULL, 0xee92fb5515482d44ULL,
    0x991711052d8bf3c5ULL, 0x751bdd152d4d1c4aULL, 0xbf5cd54678eef0b6ULL, 0xd262d45a78a0635dULL,
    0xef340a98172aace4ULL, 0x86fb897116c87c34ULL, 0x9580869f0e7aac0eULL, 0xd45d35e6ae3d4da0ULL,
    0xbae0a846d2195712ULL, 0x8974836059cca109ULL, 0xe998d258869facd7ULL, 0x2bd1a438703fc94bULL,
    0x91ff83775423cc06ULL, 0x7b6306a34627ddcfULL, 0xb67f6455292cbf08ULL, 0x1a3bc84c17b1d542ULL,
    0xe41f3d6a7377eecaULL, 0x20caba5f1d9e4a93ULL, 0x8e938662882af53eULL, 0x547eb47b7282ee9cULL,
    0xb23867fb2a35b28dULL, 0xe99e619a4f23aa43ULL, 0xdec681f9f4c31f31ULL, 0x6405fa00e2ec94d4ULL,
    0x8b3c113c38f9f37eULL, 0xde83bc408dd3dd04ULL, 0xae0b158b4738705eULL, 0x9624ab50b148d445ULL,
    0xd98ddaee19068c76ULL, 0x3badd624dd9b0957ULL, 0x87f8a8d4cfa417c9ULL, 0xe54ca5d70a80e5d6ULL,
    0xa9f6d30a038d1dbcULL, 0x5e9fcf4ccd211f4cULL, 0xd47487cc8470652bULL, 0x7647c3200069671fULL,
    0x84c8d4dfd2c63f3bULL, 0x29ecd9f40041e073ULL, 0xa5fb0a17c777cf09ULL, 0xf468107100525890ULL,
    0xcf79cc9db955c2ccULL, 0x7182148d4066eeb4ULL, 0x81ac1fe293d599bfULL, 0xc6f14cd848405530ULL,
    0xa21727db38cb002fULL, 0xb8ada00e5a506a7cULL, 0xca9cf1d206fdc03bULL, 0xa6d90811f0e4851cULL,
    0xfd442e4688bd304aULL, 0x908f4a166d1da663ULL, 0x9e4a9cec15763e2eULL, 0x9a598e4e043287feULL,
    0xc5dd44271ad3cdbaULL, 0x40eff1e1853f29fdULL, 0xf7549530e188c128ULL, 0xd12bee59e68ef47cULL,
    0x9a94dd3e8cf578b9ULL, 0x82bb74f8301958ceULL, 0xc13a148e3032d6e7ULL, 0xe36a52363c1faf01ULL,
    0xf18899b1bc3f8ca1ULL, 0xdc44e6c3cb279ac1ULL, 0x96f5600f15a7b7e5ULL, 0x29ab103a5ef8c0b9ULL,
    0xbcb2b812db11a5deULL, 0x7415d448f6b6f0e7ULL, 0xebdf661791d60f56ULL, 0x111b495b3464ad21ULL,
    0x936b9fcebb25c995ULL, 0xcab10dd900beec34ULL, 0xb84687c269ef3bfbULL, 0x3d5d514f40eea742ULL,
    0xe65829b3046b0afaULL, 0x0cb4a5a3112a5112ULL, 0x8ff71a0fe2c2e6dcULL, 0x47f0e785eaba72abULL,
    0xb3f4e093db73a093ULL, 0x59ed216765690f56ULL, 0xe0f218b8d25088b8ULL, 0x306869c13ec3532cULL,
    0x8c974f7383725573ULL, 0x1e414218c73a13fbULL, 0xafbd2350644eeacfULL, 0xe5d1929ef90898faULL,
    0xdbac6c247d62a583ULL, 0xdf45f746b74abf39ULL, 0x894bc396ce5da772ULL, 0x6b8bba8c328eb783ULL,
    0xab9eb47c81f5114fULL, 0x066ea92f3f326564ULL, 0xd686619ba27255a2ULL, 0xc80a537b0efefebdULL,
    0x8613fd0145877585ULL, 0xbd06742ce95f5f36ULL, 0xa798fc4196e952e7ULL, 0x2c48113823b73704ULL,
    0xd17f3b51fca3a7a0ULL, 0xf75a15862ca504c5ULL, 0x82ef85133de648c4ULL, 0x9a984d73dbe722fbULL,
    0xa3ab66580d5fdaf5ULL, 0xc13e60d0d2e0ebbaULL, 0xcc963fee10b7d1b3ULL, 0x318df905079926a8ULL,
    0xffbbcfe994e5c61fULL, 0xfdf17746497f7052ULL, 0x9fd561f1fd0f9bd3ULL, 0xfeb6ea8bedefa633ULL,
    0xc7caba6e7c5382c8ULL, 0xfe64a52ee96b8fc0ULL, 0xf9bd690a1b68637bULL, 0x3dfdce7aa3c673b0ULL,
    0x9c1661a651213e2dULL, 0x06bea10ca65c084eULL, 0xc31bfa0fe5698db8ULL, 0x486e494fcff30a62ULL,
    0xf3e2f893dec3f126ULL, 0x5a89dba3c3efccfaULL, 0x986ddb5c6b3a76b7ULL, 0xf89629465a75e01cULL,
    0xbe89523386091465ULL, 0xf6bbb397f1135823ULL, 0xee2ba6c0678b597fULL, 0x746aa07ded582e2cULL,
    0x94db483840b717efULL, 0xa8c2a44eb4571cdcULL, 0xba121a4650e4ddebULL, 0x92f34d62616ce413ULL,
    0xe896a0d7e51e1566ULL, 0x77b020baf9c81d17ULL, 0x915e2486ef32cd60ULL, 0x0ace1474dc1d122eULL,
    0xb5b5ada8aaff80b8ULL, 0x0d819992132456baULL, 0xe3231912d5bf60e6ULL, 0x10e1fff697ed6c69ULL,
    0x8df5efabc5979c8fULL, 0xca8d3ffa1ef463c1ULL, 0xb1736b96b6fd83b3ULL, 0xbd308ff8a6b17cb2ULL,
    0xddd0467c64bce4a0ULL, 0xac7cb3f6d05ddbdeULL, 0x8aa22c0dbef60ee4ULL, 0x6bcdf07a423aa96bULL,
    0xad4ab7112eb3929dULL, 0x86c16c98d2c953c6ULL, 0xd89d64d57a607744ULL, 0xe871c7bf077ba8b7ULL,
    0x87625f056c7c4a8bULL, 0x11471cd764ad4972ULL, 0xa93af6c6c79b5d2dULL, 0xd598e40d3dd89bcfULL,
    0xd389b47879823479ULL, 0x4aff1d108d4ec2c3ULL, 0x843610cb4bf160cbULL, 0xcedf722a585139baULL,
    0xa54394fe1eedb8feULL, 0xc2974eb4ee658828ULL, 0xce947a3da6a9273eULL, 0x733d226229feea32ULL,
    0x811ccc668829b887ULL, 0x0806357d5a3f525fULL, 0xa163ff802a3426a8ULL, 0xca07c2dcb0cf26f7ULL,
    0xc9bcff6034c13052ULL, 0xfc89b393dd02f0b5ULL, 0xfc2c3f3841f17c67ULL, 0xbbac2078d443ace2ULL,
    0x9d9ba7832936edc0ULL, 0xd54b944b84aa4c0dULL, 0xc5029163f384a931ULL, 0x0a9e795e65d4df11ULL,
    0xf64335bcf065d37dULL, 0x4d4617b5ff4a16d5ULL, 0x99ea0196163fa42eULL, 0x504bced1bf8e4e45ULL,
    0xc06481fb9bcf8d39ULL, 0xe45ec2862f71e1d6ULL, 0xf07da27a82c37088ULL, 0x5d767327bb4e5a4cULL,
    0x964e858c91ba2655ULL, 0x3a6a07f8d510f86fULL, 0xbbe226efb628afeaULL, 0x890489f70a55368bULL,
    0xeadab0aba3b2dbe5ULL, 0x2b45ac74ccea842eULL, 0x92c8ae6b464fc96fULL, 0x3b0b8bc90012929dULL,
    0xb77ada0617e3bbcbULL, 0x09ce6ebb40173744ULL, 0xe55990879ddcaabdULL, 0xcc420a6a101d0515ULL,
    0x8f57fa54c2a9eab6ULL, 0x9fa946824a12232dULL, 0xb32df8e9f3546564ULL, 0x47939822dc96abf9ULL,
    0xdff9772470297ebdULL, 0x59787e2b93bc56f7ULL, 0x8bfbea76c619ef36ULL, 0x57eb4edb3c55b65aULL,
    0xaefae51477a06b03ULL, 0xede622920b6b23f1ULL, 0xdab99e59958885c4ULL, 0xe95fab368e45ecedULL,
    0x88b402f7fd75539bULL, 0x11dbcb0218ebb414ULL, 0xaae103b5fcd2a881ULL, 0xd652bdc29f26a119ULL,
    0xd59944a37c0752a2ULL, 0x4be76d3346f0495fULL, 0x857fcae62d8493a5ULL, 0x6f70a4400c562ddbULL,
    0xa6dfbd9fb8e5b88eULL, 0xcb4ccd500f6bb952ULL, 0xd097ad07a71f26b2ULL, 0x7e2000a41346a7a7ULL,
    0x825ecc24c873782fULL, 0x8ed400668c0c28c8ULL, 0xa2f67f2dfa90563bULL, 0x728900802f0f32faULL,
    0xcbb41ef979346bcaULL, 0x4f2b40a03ad2ffb9ULL, 0xfea126b7d78186bcULL, 0xe2f610c84987bfa8ULL,
    0x9f24b832e6b0f436ULL, 0x0dd9ca7d2df4d7c9ULL, 0xc6ede63fa05d3143ULL, 0x91503d1c79720dbbULL,
    0xf8a95fcf88747d94ULL, 0x75a44c6397ce912aULL, 0x9b69dbe1b548ce7cULL, 0xc986afbe3ee11abaULL,
    0xc24452da229b021bULL, 0xfbe85badce996168ULL, 0xf2d56790ab41c2a2ULL, 0xfae27299423fb9c3ULL,
    0x97c560ba6b0919a5ULL, 0xdccd879fc967d41aULL, 0xbdb6b8e905cb600fULL, 0x5400e987bbc1c920ULL,
    0xed246723473e3813ULL, 0x290123e9aab23b68ULL, 0x9436c0760c86e30bULL, 0xf9a0b6720aaf6521ULL,
    0xb94470938fa89bceULL, 0xf808e40e8d5b3e69ULL, 0xe7958cb87392c2c2ULL, 0xb60b1d1230b20e04ULL,
    0x90bd77f3483bb9b9ULL, 0xb1c6f22b5e6f48c2ULL, 0xb4ecd5f01a4aa828ULL, 0x1e38aeb6360b1af3ULL,
    0xe2280b6c20dd5232ULL, 0x25c6da63c38de1b0ULL, 0x8d590723948a535fULL, 0x579c487e5a38ad0eULL,
    0xb0af48ec79ace837ULL, 0x2d835a9df0c6d851ULL, 0xdcdb1b2798182244ULL, 0xf8e431456cf88e65ULL,
    0x8a08f0f8bf0f156bULL, 0x1b8e9ecb641b58ffULL, 0xac8b2d36eed2dac5ULL, 0xe272467e3d222f3fULL,
    0xd7adf884aa879177ULL, 0x5b0ed81dcc6abb0fULL, 0x86ccbb52ea94baeaULL, 0x98e947129fc2b4e9ULL,
    0xa87fea27a539e9a5ULL, 0x3f2398d747b36224ULL, 0xd29fe4b18e88640eULL, 0x8eec7f0d19a03aadULL,
    0x83a3eeeef9153e89ULL, 0x1953cf68300424acULL, 0xa48ceaaab75a8e2bULL, 0x5fa8c3423c052dd7ULL,
    0xcdb02555653131b6ULL, 0x3792f412cb06794dULL, 0x808e17555f3ebf11ULL, 0xe2bbd88bbee40bd0ULL,
    0xa0b19d2ab70e6ed6ULL, 0x5b6aceaeae9d0ec4ULL, 0xc8de047564d20a8bULL, 0xf245825a5a445275ULL,
    0xfb158592be068d2eULL, 0xeed6e2f0f0d56712ULL, 0x9ced737bb6c4183dULL, 0x55464dd69685606bULL,
    0xc428d05aa4751e4cULL, 0xaa97e14c3c26b886ULL, 0xf53304714d9265dfULL, 0xd53dd99f4b3066a8ULL,
    0x993fe2c6d07b7fabULL, 0xe546a8038efe4029ULL, 0xbf8fdb78849a5f96ULL, 0xde98520472bdd033ULL,
    0xef73d256a5c0f77cULL, 0x963e66858f6d4440ULL, 0x95a8637627989aadULL, 0xdde7001379a44aa8ULL,
    0xbb127c53b17ec159ULL, 0x5560c018580d5d52ULL, 0xe9d71b689dde71afULL, 0xaab8f01e6e10b4a6ULL,
    0x9226712162ab070dULL, 0xcab3961304ca70e8ULL, 0xb6b00d69bb55c8d1ULL, 0x3d607b97c5fd0d22ULL,
    0xe45c10c42a2b3b05ULL, 0x8cb89a7db77c506aULL, 0x8eb98a7a9a5b04e3ULL, 0x77f3608e92adb242ULL,
    0xb267ed1940f1c61cULL, 0x55f038b237591ed3ULL, 0xdf01e85f912e37a3ULL, 0x6b6c46dec52f6688ULL,
    0x8b61313bbabce2c6ULL, 0x2323ac4b3b3da015ULL, 0xae397d8aa96c1b77ULL, 0xabec975e0a0d081aULL,
    0xd9c7dced53c72255ULL, 0x96e7bd358c904a21ULL, 0x881cea14545c7575ULL, 0x7e50d64177da2e54ULL,
    0xaa242499697392d2ULL, 0xdde50bd1d5d0b9e9ULL, 0xd4ad2dbfc3d07787ULL, 0x955e4ec64b44e864ULL,
    0x84ec3c97da624ab4ULL, 0xbd5af13bef0b113eULL, 0xa6274bbdd0fadd61ULL, 0xecb1ad8aeacdd58eULL,
    0xcfb11ead453994baULL, 0x67de18eda5814af2ULL, 0x81ceb32c4b43fcf4ULL, 0x80eacf948770ced7ULL,
    0xa2425ff75e14fc31ULL, 0xa1258379a94d028dULL, 0xcad2f7f5359a3b3eULL, 0x096ee45813a04330ULL,
    0xfd87b5f28300ca0dULL, 0x8bca9d6e188853fcULL, 0x9e74d1b791e07e48ULL, 0x775ea264cf55347eULL,
    0xc612062576589ddaULL, 0x95364afe032a819eULL, 0xf79687aed3eec551ULL, 0x3a83ddbd83f52205ULL,
    0x9abe14cd44753b52ULL, 0xc4926a9672793543ULL, 0xc16d9a0095928a27ULL, 0x75b7053c0f178294ULL,
    0xf1c90080baf72cb1ULL, 0x5324c68b12dd6339ULL, 0x971da05074da7beeULL, 0xd3f6fc16ebca5e04ULL,
    0xbce5086492111aeaULL, 0x88f4bb1ca6bcf585ULL, 0xec1e4a7db69561a5ULL, 0x2b31e9e3d06c32e6ULL,
    0x9392ee8e921d5d07ULL, 0x3aff322e62439fd0ULL, 0xb877aa3236a4b449ULL, 0x09befeb9fad487c3ULL,
    0xe69594bec44de15bULL, 0x4c2ebe687989a9b4ULL, 0x901d7cf73ab0acd9ULL, 0x0f9d37014bf60a11ULL,
    0xb424dc35095cd80fULL, 0x538484c19ef38c95ULL, 0xe12e13424bb40e13ULL, 0x2865a5f206b06fbaULL,
    0x8cbccc096f5088cbULL, 0xf93f87b7442e45d4ULL, 0xafebff0bcb24aafeULL, 0xf78f69a51539d749ULL,
    0xdbe6fecebdedd5beULL, 0xb573440e5a884d1cULL, 0x89705f4136b4a597ULL, 0x31680a88f8953031ULL,
    0xabcc77118461cefcULL, 0xfdc20d2b36ba7c3eULL, 0xd6bf94d5e57a42bcULL, 0x3d32907604691b4dULL,
    0x8637bd05af6c69b5ULL, 0xa63f9a49c2c1b110ULL, 0xa7c5ac471b478423ULL, 0x0fcf80dc33721d54ULL,
    0xd1b71758e219652bULL, 0xd3c36113404ea4a9ULL, 0x83126e978d4fdf3bULL, 0x645a1cac083126eaULL,
    0xa3d70a3d70a3d70aULL, 0x3d70a3d70a3d70a4ULL, 0xccccccccccccccccULL, 0xcccccccccccccccdULL,
    0x8000000000000000ULL, 0x0000000000000000ULL, 0xa000000000000000ULL, 0x0000000000000000ULL,
    0xc800000000000000ULL, 0x0000000000000000ULL, 0xfa00000000000000ULL, 0x0000000000000000ULL,
    0x9c40000000000000ULL, 0x0000000000000000ULL, 0xc350000000000000ULL, 0x0000000000000000ULL,
    0xf424000000000000ULL, 0x0000000000000000ULL, 0x9896800000000000ULL, 0x0000000000000000ULL,
    0xbebc200000000000ULL, 0x0000000000000000ULL, 0xee6b280000000000ULL, 0x0000000000000000ULL,
    0x9502f90000000000ULL, 0x0000000000000000ULL, 0xba43b74000000000ULL, 0x0000000000000000ULL,
    0xe8d4a51000000000ULL, 0x0000000000000000ULL, 0x9184e72a00000000ULL, 0x0000000000000000ULL,
    0xb5e620f480000000ULL, 0x0000000000000000ULL, 0xe35fa931a0000000ULL, 0x0000000000000000ULL,
    0x8e1bc9bf04000000ULL, 0x0000000000000000ULL, 0xb1a2bc2ec5000000ULL, 0x0000000000000000ULL,
    0xde0b6b3a76400000ULL, 0x0000000000000000ULL, 0x8ac7230489e80000ULL, 0x0000000000000000ULL,
    0xad78ebc5ac620000ULL, 0x0000000000000000ULL, 0xd8d726b7177a8000ULL, 0x0000000000000000ULL,
    0x878678326eac9000ULL, 0x0000000000000000ULL, 0xa968163f0a57b400ULL, 0x0000000000000000ULL,
    0xd3c21bcecceda100ULL, 0x0000000000000000ULL, 0x84595161401484a0ULL, 0x0000000000000000ULL,
    0xa56fa5b99019a5c8ULL, 0x0000000000000000ULL, 0xcecb8f27f4200f3aULL, 0x0000000000000000ULL,
    0x813f3978f8940984ULL, 0x4000000000000000ULL, 0xa18f07d736b90be5ULL, 0x5000000000000000ULL,
    0xc9f2c9cd04674edeULL, 0xa400000000000000ULL, 0xfc6f7c4045812296ULL, 0x4d00000000000000ULL,
    0x9dc5ada82b70b59dULL, 0xf020000000000000ULL, 0xc5371912364ce305ULL, 0x6c28000000000000ULL,
    0xf684df56c3e01bc6ULL, 0xc732000000000000ULL, 0x9a130b963a6c115cULL, 0x3c7f400000000000ULL,
    0xc097ce7bc90715b3ULL, 0x4b9f100000000000ULL, 0xf0bdc21abb48db20ULL, 0x1e86d40000000000ULL,
    0x96769950b50d88f4ULL, 0x1314448000000000ULL, 0xbc143fa4e250eb31ULL, 0x17d955a000000000ULL,
    0xeb194f8e1ae525fdULL, 0x5dcfab0800000000ULL, 0x92efd1b8d0cf37beULL, 0x5aa1cae500000000ULL,
    0xb7abc627050305adULL, 0xf14a3d9e40000000ULL, 0xe596b7b0c643c719ULL, 0x6d9ccd05d0000000ULL,
    0x8f7e32ce7bea5c6fULL, 0xe4820023a2000000ULL, 0xb35dbf821ae4f38bULL, 0xdda2802c8a800000ULL,
    0xe0352f62a19e306eULL, 0xd50b2037ad200000ULL, 0x8c213d9da502de45ULL, 0x4526f422cc340000ULL,
    0xaf298d050e4395d6ULL, 0x9670b12b7f410000ULL, 0xdaf3f04651d47b4cULL, 0x3c0cdd765f114000ULL,
    0x88d8762bf324cd0fULL, 0xa5880a69fb6ac800ULL, 0xab0e93b6efee0053ULL, 0x8eea0d047a457a00ULL,
    0xd5d238a4abe98068ULL, 0x72a4904598d6d880ULL, 0x85a36366eb71f041ULL, 0x47a6da2b7f864750ULL,
    0xa70c3c40a64e6c51ULL, 0x999090b65f67d924ULL, 0xd0cf4b50cfe20765ULL, 0xfff4b4e3f741cf6dULL,
    0x82818f1281ed449fULL, 0xbff8f10e7a8921a4ULL, 0xa321f2d7226895c7ULL, 0xaff72d52192b6a0dULL,
    0xcbea6f8ceb02bb39ULL, 0x9bf4f8a69f764490ULL, 0xfee50b7025c36a08ULL, 0x02f236d04753d5b4ULL,
    0x9f4f2726179a2245ULL, 0x01d762422c946590ULL, 0xc722f0ef9d80aad6ULL, 0x424d3ad2b7b97ef5ULL,
    0xf8ebad2b84e0d58bULL, 0xd2e0898765a7deb2ULL, 0x9b934c3b330c8577ULL, 0x63cc55f49f88eb2fULL,
    0xc2781f49ffcfa6d5ULL, 0x3cbf6b71c76b25fbULL, 0xf316271c7fc3908aULL, 0x8bef464e3945ef7aULL,
    0x97edd871cfda3a56ULL, 0x97758bf0e3cbb5acULL, 0xbde94e8e43d0c8ecULL, 0x3d52eeed1cbea317ULL,
    0xed63a231d4c4fb27ULL, 0x4ca7aaa863ee4bddULL, 0x945e455f24fb1cf8ULL, 0x8fe8caa93e74ef6aULL,
    0xb975d6b6ee39e436ULL, 0xb3e2fd538e122b44ULL, 0xe7d34c64a9c85d44ULL, 0x60dbbca87196b616ULL,
    0x90e40fbeea1d3a4aULL, 0xbc8955e946fe31cdULL, 0xb51d13aea4a488ddULL, 0x6babab6398bdbe41ULL,
    0xe264589a4dcdab14ULL, 0xc696963c7eed2dd1ULL, 0x8d7eb76070a08aecULL, 0xfc1e1de5cf543ca2ULL,
    0xb0de65388cc8ada8ULL, 0x3b25a55f43294bcbULL, 0xdd15fe86affad912ULL, 0x49ef0eb713f39ebeULL,
    0x8a2dbf142dfcc7abULL, 0x6e3569326c784337ULL, 0xacb92ed9397bf996ULL, 0x49c2c37f07965404ULL,
    0xd7e77a8f87daf7fbULL, 0xdc33745ec97be906ULL, 0x86f0ac99b4e8dafdULL, 0x69a028bb3ded71a3ULL,
    0xa8acd7c0222311bcULL, 0xc40832ea0d68ce0cULL, 0xd2d80db02aabd62bULL, 0xf50a3fa490c30190ULL,
    0x83c7088e1aab65dbULL, 0x792667c6da79e0faULL, 0xa4b8cab1a1563f52ULL, 0x577001b891185938ULL,
    0xcde6fd5e09abcf26ULL, 0xed4c0226b55e6f86ULL, 0x80b05e5ac60b6178ULL, 0x544f8158315b05b4ULL,
    0xa0dc75f1778e39d6ULL, 0x696361ae3db1c721ULL, 0xc913936dd571c84cULL, 0x03bc3a19cd1e38e9ULL,
    0xfb5878494ace3a5fULL, 0x04ab48a04065c723ULL, 0x9d174b2dcec0e47bULL, 0x62eb0d64283f9c76ULL,
    0xc45d1df942711d9aULL, 0x3ba5d0bd324f8394ULL, 0xf5746577930d6500ULL, 0xca8f44ec7ee36479ULL,
    0x9968bf6abbe85f20ULL, 0x7e998b13cf4e1ecbULL, 0xbfc2ef456ae276e8ULL, 0x9e3fedd8c321a67eULL,
    0xefb3ab16c59b14a2ULL, 0xc5cfe94ef3ea101eULL, 0x95d04aee3b80ece5ULL, 0xbba1f1d158724a12ULL,
    0xbb445da9ca61281fULL, 0x2a8a6e45ae8edc97ULL, 0xea1575143cf97226ULL, 0xf52d09d71a3293bdULL,
    0x924d692ca61be758ULL, 0x593c2626705f9c56ULL, 0xb6e0c377cfa2e12eULL, 0x6f8b2fb00c77836cULL,
    0xe498f455c38b997aULL, 0x0b6dfb9c0f956447ULL, 0x8edf98b59a373fecULL, 0x4724bd4189bd5eacULL,
    0xb2977ee300c50fe7ULL, 0x58edec91ec2cb657ULL, 0xdf3d5e9bc0f653e1ULL, 0x2f2967b66737e3edULL,
    0x8b865b215899f46cULL, 0xbd79e0d20082ee74ULL, 0xae67f1e9aec07187ULL, 0xecd8590680a3aa11ULL,
    0xda01ee641a708de9ULL, 0xe80e6f4820cc9495ULL, 0x884134fe908658b2ULL, 0x3109058d147fdcddULL,
    0xaa51823e34a7eedeULL, 0xbd4b46f0599fd415ULL, 0xd4e5e2cdc1d1ea96ULL, 0x6c9e18ac7007c91aULL,
    0x850fadc09923329eULL, 0x03e2cf6bc604ddb0ULL, 0xa6539930bf6bff45ULL, 0x84db8346b786151cULL,
    0xcfe87f7cef46ff16ULL, 0xe612641865679a63ULL, 0x81f14fae158c5f6eULL, 0x4fcb7e8f3f60c07eULL,
    0xa26da3999aef7749ULL, 0xe3be5e330f38f09dULL, 0xcb090c8001ab551cULL, 0x5cadf5bfd3072cc5ULL,
    0xfdcb4fa002162a63ULL, 0x73d9732fc7c8f7f6ULL, 0x9e9f11c4014dda7eULL, 0x2867e7fddcdd9afaULL,
    0xc646d63501a1511dULL, 0xb281e1fd541501b8ULL, 0xf7d88bc24209a565ULL, 0x1f225a7ca91a4226ULL,
    0x9ae757596946075fULL, 0x3375788de9b06958ULL, 0xc1a12d2fc3978937ULL, 0x0052d6b1641c83aeULL,
    0xf209787bb47d6b84ULL, 0xc0678c5dbd23a49aULL, 0x9745eb4d50ce6332ULL, 0xf840b7ba963646e0ULL,
    0xbd176620a501fbffULL, 0xb650e5a93bc3d898ULL, 0xec5d3fa8ce427affULL, 0xa3e51f138ab4cebeULL,
    0x93ba47c980e98cdfULL, 0xc66f336c36b10137ULL, 0xb8a8d9bbe123f017ULL, 0xb80b0047445d4184ULL,
    0xe6d3102ad96cec1dULL, 0xa60dc059157491e5ULL, 0x9043ea1ac7e41392ULL, 0x87c89837ad68db2fULL,
    0xb454e4a179dd1877ULL, 0x29babe4598c311fbULL, 0xe16a1dc9d8545e94ULL, 0xf4296dd6fef3d67aULL,
    0x8ce2529e2734bb1dULL, 0x1899e4a65f58660cULL, 0xb01ae745b101e9e4ULL, 0x5ec05dcff72e7f8fULL,
    0xdc21a1171d42645dULL, 0x76707543f4fa1f73ULL, 0x899504ae72497ebaULL, 0x6a06494a791c53a8ULL,
    0xabfa45da0edbde69ULL, 0x0487db9d17636892ULL, 0xd6f8d7509292d603ULL, 0x45a9d2845d3c42b6ULL,
    0x865b86925b9bc5c2ULL, 0x0b8a2392ba45a9b2ULL, 0xa7f26836f282b732ULL, 0x8e6cac7768d7141eULL,
    0xd1ef0244af2364ffULL, 0x3207d795430cd926ULL, 0x8335616aed761f1fULL, 0x7f44e6bd49e807b8ULL,
    0xa402b9c5a8d3a6e7ULL, 0x5f16206c9c6209a6ULL, 0xcd036837130890a1ULL, 0x36dba887c37a8c0fULL,
    0x802221226be55a64ULL, 0xc2494954da2c9789ULL, 0xa02aa96b06deb0fdULL, 0xf2db9baa10b7bd6cULL,
    0xc83553c5c8965d3dULL, 0x6f92829494e5acc7ULL, 0xfa42a8b73abbf48cULL, 0xcb772339ba1f17f9ULL,
    0x9c69a97284b578d7ULL, 0xff2a760414536efbULL, 0xc38413cf25e2d70dULL, 0xfef5138519684abaULL,
    0xf46518c2ef5b8cd1ULL, 0x7eb258665fc25d69ULL, 0x98bf2f79d5993802ULL, 0xef2f773ffbd97a61ULL,
    0xbeeefb584aff8603ULL, 0xaafb550ffacfd8faULL, 0xeeaaba2e5dbf6784ULL, 0x95ba2a53f983cf38ULL,
    0x952ab45cfa97a0b2ULL, 0xdd945a747bf26183ULL, 0xba756174393d88dfULL, 0x94f971119aeef9e4ULL,
    0xe912b9d1478ceb17ULL, 0x7a37cd5601aab85dULL, 0x91abb422ccb812eeULL, 0xac62e055c10ab33aULL,
    0xb616a12b7fe617aaULL, 0x577b986b314d6009ULL, 0xe39c49765fdf9d94ULL, 0xed5a7e85fda0b80bULL,
    0x8e41ade9fbebc27dULL, 0x14588f13be847307ULL, 0xb1d219647ae6b31cULL, 0x596eb2d8ae258fc8ULL,
    0xde469fbd99a05fe3ULL, 0x6fca5f8ed9aef3bbULL, 0x8aec23d680043beeULL, 0x25de7bb9480d5854ULL,
    0xada72ccc20054ae9ULL, 0xaf561aa79a10ae6aULL, 0xd910f7ff28069da4ULL, 0x1b2ba1518094da04ULL,
    0x87aa9aff79042286ULL, 0x90fb44d2f05d0842ULL, 0xa99541bf57452b28ULL, 0x353a1607ac744a53ULL,
    0xd3fa922f2d1675f2ULL, 0x42889b8997915ce8ULL, 0x847c9b5d7c2e09b7ULL, 0x69956135febada11ULL,
    0xa59bc234db398c25ULL, 0x43fab9837e699095ULL, 0xcf02b2c21207ef2eULL, 0x94f967e45e03f4bbULL,
    0x8161afb94b44f57dULL, 0x1d1be0eebac278f5ULL, 0xa1ba1ba79e1632dcULL, 0x6462d92a69731732ULL,
    0xca28a291859bbf93ULL, 0x7d7b8f7503cfdcfeULL, 0xfcb2cb35e702af78ULL, 0x5cda735244c3d43eULL,
    0x9defbf01b061adabULL, 0x3a0888136afa64a7ULL, 0xc56baec21c7a1916ULL, 0x088aaa1845b8fdd0ULL,
    0xf6c69a72a3989f5bULL, 0x8aad549e57273d45ULL, 0x9a3c2087a63f6399ULL, 0x36ac54e2f678864bULL,
    0xc0cb28a98fcf3c7fULL, 0x84576a1bb416a7ddULL, 0xf0fdf2d3f3c30b9fULL, 0x656d44a2a11c51d5ULL,
    0x969eb7c47859e743ULL, 0x9f644ae5a4b1b325ULL, 0xbc4665b596706114ULL, 0x873d5d9f0dde1feeULL,
    0xeb57ff22fc0c7959ULL, 0xa90cb506d155a7eaULL, 0x9316ff75dd87cbd8ULL, 0x09a7f12442d588f2ULL,
    0xb7dcbf5354e9beceULL, 0x0c11ed6d538aeb2fULL, 0xe5d3ef282a242e81ULL, 0x8f1668c8a86da5faULL,
    0x8fa475791a569d10ULL, 0xf96e017d694487bcULL, 0xb38d92d760ec4455ULL, 0x37c981dcc395a9acULL,
    0xe070f78d3927556aULL, 0x85bbe253f47b1417ULL, 0x8c469ab843b89562ULL, 0x93956d7478ccec8eULL,
    0xaf58416654a6babbULL, 0x387ac8d1970027b2ULL, 0xdb2e51bfe9d0696aULL, 0x06997b05fcc0319eULL,
    0x88fcf317f22241e2ULL, 0x441fece3bdf81f03ULL, 0xab3c2fddeeaad25aULL, 0xd527e81cad7626c3ULL,
    0xd60b3bd56a5586f1ULL, 0x8a71e223d8d3b074ULL, 0x85c7056562757456ULL, 0xf6872d5667844e49ULL,
    0xa738c6bebb12d16cULL, 0xb428f8ac016561dbULL, 0xd106f86e69d785c7ULL, 0xe13336d701beba52ULL,
    0x82a45b450226b39cULL, 0xecc0024661173473ULL, 0xa34d721642b06084ULL, 0x27f002d7f95d0190ULL,
    0xcc20ce9bd35c78a5ULL, 0x31ec038df7b441f4ULL, 0xff290242c83396ceULL, 0x7e67047175a15271ULL,
    0x9f79a169bd203e41ULL, 0x0f0062c6e984d386ULL, 0xc75809c42c684dd1ULL, 0x52c07b78a3e60868ULL,
    0xf92e0c3537826145ULL, 0xa7709a56ccdf8a82ULL, 0x9bbcc7a142b17ccbULL, 0x88a66076400bb691ULL,
    0xc2abf989935ddbfeULL, 0x6acff893d00ea435ULL, 0xf356f7ebf83552feULL, 0x0583f6b8c4124d43ULL,
    0x98165af37b2153deULL, 0xc3727a337a8b704aULL, 0xbe1bf1b059e9a8d6ULL, 0x744f18c0592e4c5cULL,
    0xeda2ee1c7064130cULL, 0x1162def06f79df73ULL, 0x9485d4d1c63e8be7ULL, 0x8addcb5645ac2ba8ULL,
    0xb9a74a0637ce2ee1ULL, 0x6d953e2bd7173692ULL, 0xe8111c87c5c1ba99ULL, 0xc8fa8db6ccdd0437ULL,
    0x910ab1d4db9914a0ULL, 0x1d9c9892400a22a2ULL, 0xb54d5e4a127f59c8ULL, 0x2503beb6d00cab4bULL,
    0xe2a0b5dc971f303aULL, 0x2e44ae64840fd61dULL, 0x8da471a9de737e24ULL, 0x5ceaecfed289e5d2ULL,
    0xb10d8e1456105dadULL, 0x7425a83e872c5f47ULL, 0xdd50f1996b947518ULL, 0xd12f124e28f77719ULL,
    0x8a5296ffe33cc92fULL, 0x82bd6b70d99aaa6fULL, 0xace73cbfdc0bfb7bULL, 0x636cc64d1001550bULL,
    0xd8210befd30efa5aULL, 0x3c47f7e05401aa4eULL, 0x8714a775e3e95c78ULL, 0x65acfaec34810a71ULL,
    0xa8d9d1535ce3b396ULL, 0x7f1839a741a14d0dULL, 0xd31045a8341ca07cULL, 0x1ede48111209a050ULL,
    0x83ea2b892091e44dULL, 0x934aed0aab460432ULL, 0xa4e4b66b68b65d60ULL, 0xf81da84d5617853fULL,
    0xce1de40642e3f4b9ULL, 0x36251260ab9d668eULL, 0x80d2ae83e9ce78f3ULL, 0xc1d72b7c6b426019ULL,
    0xa1075a24e4421730ULL, 0xb24cf65b8612f81fULL, 0xc94930ae1d529cfcULL, 0xdee033f26797b627ULL,
    0xfb9b7cd9a4a7443cULL, 0x169840ef017da3b1ULL, 0x9d412e0806e88aa5ULL, 0x8e1f289560ee864eULL,
    0xc491798a08a2ad4eULL, 0xf1a6f2bab92a27e2ULL, 0xf5b5d7ec8acb58a2ULL, 0xae10af696774b1dbULL,
    0x9991a6f3d6bf1765ULL, 0xacca6da1e0a8ef29ULL, 0xbff610b0cc6edd3fULL, 0x17fd090a58d32af3ULL,
    0xeff394dcff8a948eULL, 0xddfc4b4cef07f5b0ULL, 0x95f83d0a1fb69cd9ULL, 0x4abdaf101564f98eULL,
    0xbb764c4ca7a4440fULL, 0x9d6d1ad41abe37f1ULL, 0xea53df5fd18d5513ULL, 0x84c86189216dc5edULL,
    0x92746b9be2f8552cULL, 0x32fd3cf5b4e49bb4ULL, 0xb7118682dbb66a77ULL, 0x3fbc8c33221dc2a1ULL,
    0xe4d5e82392a40515ULL, 0x0fabaf3feaa5334aULL, 0x8f05b1163ba6832dULL, 0x29cb4d87f2a7400eULL,
    0xb2c71d5bca9023f8ULL, 0x743e20e9ef511012ULL, 0xdf78e4b2bd342cf6ULL, 0x914da9246b255416ULL,
    0x8bab8eefb6409c1aULL, 0x1ad089b6c2f7548eULL, 0xae9672aba3d0c320ULL, 0xa184ac2473b529b1ULL,
    0xda3c0f568cc4f3e8ULL, 0xc9e5d72d90a2741eULL, 0x8865899617fb1871ULL, 0x7e2fa67c7a658892ULL,
    0xaa7eebfb9df9de8dULL, 0xddbb901b98feeab7ULL, 0xd51ea6fa85785631ULL, 0x552a74227f3ea565ULL,
    0x8533285c936b35deULL, 0xd53a88958f87275fULL, 0xa67ff273b8460356ULL, 0x8a892abaf368f137ULL,
    0xd01fef10a657842cULL, 0x2d2b7569b0432d85ULL, 0x8213f56a67f6b29bULL, 0x9c3b29620e29fc73ULL,
    0xa298f2c501f45f42ULL, 0x8349f3ba91b47b8fULL, 0xcb3f2f7642717713ULL, 0x241c70a936219a73ULL,
    0xfe0efb53d30dd4d7ULL, 0xed238cd383aa0110ULL, 0x9ec95d1463e8a506ULL, 0xf4363804324a40aaULL,
    0xc67bb4597ce2ce48ULL, 0xb143c6053edcd0d5ULL, 0xf81aa16fdc1b81daULL, 0xdd94b7868e94050aULL,
    0x9b10a4e5e9913128ULL, 0xca7cf2b4191c8326ULL, 0xc1d4ce1f63f57d72ULL, 0xfd1c2f611f63a3f0ULL,
    0xf24a01a73cf2dccfULL, 0xbc633b39673c8cecULL, 0x976e41088617ca01ULL, 0xd5be0503e085d813ULL,
    0xbd49d14aa79dbc82ULL, 0x4b2d8644d8a74e18ULL, 0xec9c459d51852ba2ULL, 0xddf8e7d60ed1219eULL,
    0x93e1ab8252f33b45ULL, 0xcabb90e5c942b503ULL, 0xb8da1662e7b00a17ULL, 0x3d6a751f3b936243ULL,
    0xe7109bfba19c0c9dULL, 0x0cc512670a783ad4ULL, 0x906a617d450187e2ULL, 0x27fb2b80668b24c5ULL,
    0xb484f9dc9641e9daULL, 0xb1f9f660802dedf6ULL, 0xe1a63853bbd26451ULL, 0x5e7873f8a0396973ULL,
    0x8d07e33455637eb2ULL, 0xdb0b487b6423e1e8ULL, 0xb049dc016abc5e5fULL, 0x91ce1a9a3d2cda62ULL,
    0xdc5c5301c56b75f7ULL, 0x7641a140cc7810fbULL, 0x89b9b3e11b6329baULL, 0xa9e904c87fcb0a9dULL,
    0xac2820d9623bf429ULL, 0x546345fa9fbdcd44ULL, 0xd732290fbacaf133ULL, 0xa97c177947ad4095ULL,
    0x867f59a9d4bed6c0ULL, 0x49ed8eabcccc485dULL, 0xa81f301449ee8c70ULL, 0x5c68f256bfff5a74ULL,
    0xd226fc195c6a2f8cULL, 0x73832eec6fff3111ULL, 0x83585d8fd9c25db7ULL, 0xc831fd53c5ff7eabULL,
    0xa42e74f3d032f525ULL, 0xba3e7ca8b77f5e55ULL, 0xcd3a1230c43fb26fULL, 0x28ce1bd2e55f35ebULL,
    0x80444b5e7aa7cf85ULL, 0x7980d163cf5b81b3ULL, 0xa0555e361951c366ULL, 0xd7e105bcc332621fULL,
    0xc86ab5c39fa63440ULL, 0x8dd9472bf3fefaa7ULL, 0xfa856334878fc150ULL, 0xb14f98f6f0feb951ULL,
    0x9c935e00d4b9d8d2ULL, 0x6ed1bf9a569f33d3ULL, 0xc3b8358109e84f07ULL, 0x0a862f80ec4700c8ULL,
    0xf4a642e14c6262c8ULL, 0xcd27bb612758c0faULL, 0x98e7e9cccfbd7dbdULL, 0x8038d51cb897789cULL,
    0xbf21e44003acdd2cULL, 0xe0470a63e6bd56c3ULL, 0xeeea5d5004981478ULL, 0x1858ccfce06cac74ULL,
    0x95527a5202df0ccbULL, 0x0f37801e0c43ebc8ULL, 0xbaa718e68396cffdULL, 0xd30560258f54e6baULL,
    0xe950df20247c83fdULL, 0x47c6b82ef32a2069ULL, 0x91d28b7416cdd27eULL, 0x4cdc331d57fa5441ULL,
    0xb6472e511c81471dULL, 0xe0133fe4adf8e952ULL, 0xe3d8f9e563a198e5ULL, 0x58180fddd97723a6ULL,
    0x8e679c2f5e44ff8fULL, 0x570f09eaa7ea7648ULL,    };
    """
    void sb_mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) noexcept nogil
    int sb_clz64(uint64_t x) noexcept nogil
    int sb_ctz64(uint64_t x) noexcept nogil
    const uint64_t SB_HI_NIBBLES, SB_SIXES, SB_THREES, SB_ZEROS, SB_MASK, SB_MUL1, SB_MUL2
    const uint64_t SB_POW5[1302]

# return codes of the scanner functions
cdef enum:
    OK = 0
    ERR = -1      # syntax error: Scan.err / Scan.err_pos say what and where
    SLOW = -2     # valid so far but off the fast path: the twin decides
    NOMEM = -3
    MAX_DEPTH = 512

cdef struct Scan:
    const uint8_t* buf
    Py_ssize_t n
    Py_ssize_t pos
    Py_ssize_t err_pos
    const char* err

cdef struct Col:
    char* data          # 8-byte cells: double or int64
    uint8_t* valid      # one byte per row (packed into a bitmap at the end)
    Py_ssize_t len
    Py_ssize_t cap
    Py_ssize_t nulls
    int present         # the key was seen (as an array)

cdef struct Num:
    double d
    int64_t i
    bint is_int         # an integer literal that fits int64

cdef double[23] POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                         1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]


# -- scanner primitives ----------------------------------------------------------------------

cdef inline int fail(Scan* s, Py_ssize_t pos, const char* why) noexcept nogil:
    s.err = why
    s.err_pos = pos
    return ERR


cdef inline void skip_ws(Scan* s) noexcept nogil:
    cdef uint8_t c
    while s.pos < s.n:
        c = s.buf[s.pos]
        if c == 32 or c == 10 or c == 13 or c == 9:
            s.pos += 1
        else:
            return


cdef inline bint is_hex(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


cdef inline bint is_cont(uint8_t c) noexcept nogil:
    return 0x80 <= c <= 0xBF


cdef int scan_string(Scan* s, Py_ssize_t* start, Py_ssize_t* end, bint* esc) noexcept nogil:
    """At an opening quote: validate the string, give its content span, advance past it."""
    cdef Py_ssize_t p = s.pos + 1
    cdef Py_ssize_t n = s.n
    cdef const uint8_t* b = s.buf
    cdef uint8_t c, lo, hi
    esc[0] = False
    start[0] = p
    while p < n:
        c = b[p]
        if c == 34:  # closing quote
            end[0] = p
            s.pos = p + 1
            return OK
        if c == 92:  # backslash
            esc[0] = True
            if p + 1 >= n:
                break
            c = b[p + 1]
            if c == 117:  # \uXXXX
                if p + 5 >= n or not (is_hex(b[p + 2]) and is_hex(b[p + 3])
                                      and is_hex(b[p + 4]) and is_hex(b[p + 5])):
                    return fail(s, p, "invalid \\uXXXX escape")
                p += 6
            elif c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110 \
                    or c == 114 or c == 116:
                p += 2
            else:
                return fail(s, p, "invalid escape")
            continue
        if c < 0x20:
            return fail(s, p, "control character in string")
        if c < 0x80:
            p += 1
            continue
        # multi-byte UTF-8, as strict as Python's decoder (no overlongs, no surrogates)
        if c < 0xC2:
            return fail(s, p, "invalid UTF-8")
        if c < 0xE0:
            if p + 1 >= n or not is_cont(b[p + 1]):
                return fail(s, p, "invalid UTF-8")
            p += 2
        elif c < 0xF0:
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
            if p + 2 >= n or not (lo <= b[p + 1] <= hi and is_cont(b[p + 2])):
                return fail(s, p, "invalid UTF-8")
            p += 3
        elif c < 0xF5:
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
            if p + 3 >= n or not (lo <= b[p + 1] <= hi and is_cont(b[p + 2])
                                  and is_cont(b[p + 3])):
                return fail(s, p, "invalid UTF-8")
            p += 4
        else:
            return fail(s, p, "invalid UTF-8")
    return fail(s, start[0] - 1, "unterminated string")


cdef inline bint eisel_lemire(uint64_t w, int64_t q, double* out) noexcept nogil:
    """w * 10**q correctly rounded, for 0 < w < 10**19; False when strtod must decide."""
    cdef uint64_t hi, lo, hi2, lo2, mantissa, bits
    cdef int lz, upperbit, shift
    cdef int64_t power2
    cdef Py_ssize_t idx
    if q < -342 or q > 308:
        return False
    lz = sb_clz64(w)
    w <<= lz
    idx = 2 * (q + 342)
    sb_mul128(w, SB_POW5[idx], &hi, &lo)
    if (hi & 0x1FF) == 0x1FF:  # the low bits may carry: refine with the next 64 bits
        sb_mul128(w, SB_POW5[idx + 1], &hi2, &lo2)
        lo += hi2
        if hi2 > lo:
            hi += 1
        if lo == UINT64_MAX and (q < -27 or q > 55):
            return False
    upperbit = <int>(hi >> 63)
    shift = upperbit + 64 - 52 - 3
    mantissa = hi >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upperbit - lz + 1023
    if power2 <= 0:
        return False  # subnormal
    if lo <= 1 and -4 <= q <= 23 and (mantissa & 3) == 1:
        if (mantissa << shift) == hi:
            mantissa &= ~(<uint64_t>1)  # exactly halfway: round to even
    mantissa += mantissa & 1
    mantissa >>= 1
    if mantissa >= (<uint64_t>2 << 52):
        mantissa = <uint64_t>1 << 52
        power2 += 1
    mantissa &= ~(<uint64_t>1 << 52)
    if power2 >= 0x7FF:
        return False
    bits = mantissa | (<uint64_t>power2 << 52)
    memcpy(out, &bits, 8)
    return True


cdef inline bint eight_digits(uint64_t v) noexcept nogil:
    """All eight bytes of little-endian ``v`` are ASCII digits."""
    return ((v & SB_HI_NIBBLES) | (((v + SB_SIXES) & SB_HI_NIBBLES) >> 4)) == SB_THREES


cdef inline uint64_t parse_eight(uint64_t v) noexcept nogil:
    """The value of eight ASCII digits (little-endian load), in three multiplications."""
    v -= SB_ZEROS
    v = (v * 10) + (v >> 8)
    v = (((v & SB_MASK) * SB_MUL1) + (((v >> 16) & SB_MASK) * SB_MUL2)) >> 32
    return v & <uint64_t>0xFFFFFFFF


cdef uint64_t[8] TEN_TO = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000]


cdef inline int leading_digits(uint64_t v) noexcept nogil:
    """How many of the eight bytes of little-endian ``v``, from the first, are ASCII digits
    (bytes after the first non-digit do not matter)."""
    cdef uint64_t m = ((v & SB_HI_NIBBLES) | (((v + SB_SIXES) & SB_HI_NIBBLES) >> 4)) ^ SB_THREES
    if m == 0:
        return 8
    return sb_ctz64(m) >> 3


cdef inline uint64_t parse_leading(uint64_t v, int k) noexcept nogil:
    """The value of the first ``k`` (1..7) ASCII digits of little-endian ``v``: they move to
    the top bytes, the bytes below become '0', and the eight are parsed at once."""
    return parse_eight((v << (8 * (8 - k))) | (SB_ZEROS >> (8 * k)))


cdef double slow_strtod(const uint8_t* b, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef char[64] small
    cdef char* tmp = small
    cdef Py_ssize_t k = end - start
    cdef double d
    if k >= 64:
        tmp = <char*>malloc(k + 1)
        if tmp == NULL:
            return 0.0
    memcpy(tmp, b + start, k)
    tmp[k] = 0
    d = strtod(tmp, NULL)
    if tmp != small:
        free(tmp)
    return d


cdef int parse_number(Scan* s, Num* out) noexcept nogil:
    """JSON number at s.pos -> out (d always; i and is_int for int64 integer literals)."""
    cdef const uint8_t* b = s.buf
    cdef Py_ssize_t n = s.n
    cdef Py_ssize_t p = s.pos
    cdef Py_ssize_t start = p
    cdef bint neg = False
    cdef bint frac = False
    cdef bint many = False
    cdef uint64_t w = 0
    cdef int nd = 0
    cdef int64_t q = 0
    cdef int64_t e = 0
    cdef bint eneg = False
    cdef uint8_t c
    cdef double d
    cdef uint64_t chunk
    cdef int k
    if b[p] == 45:  # '-'
        neg = True
        p += 1
    if p >= n or not (48 <= b[p] <= 57):
        return fail(s, start, "invalid number")
    if b[p] == 48:
        p += 1
    else:
        # the integer part's first (up to) eight digits in one step
        if p + 8 <= n:
            memcpy(&chunk, b + p, 8)
            k = leading_digits(chunk)
            w = parse_eight(chunk) if k == 8 else parse_leading(chunk, k)
            nd = k
            p += k
        while p < n and 48 <= b[p] <= 57:
            c = b[p] - 48
            if nd < 19:
                w = w * 10 + c
                nd += 1
            else:
                many = True
                q += 1
            p += 1
    if p < n and b[p] == 46:  # '.'
        frac = True
        p += 1
        if p >= n or not (48 <= b[p] <= 57):
            return fail(s, p, "invalid number")
        # eight digits at a time (SWAR) while they fit the 19-digit mantissa
        while w != 0 and nd <= 11 and p + 8 <= n:
            memcpy(&chunk, b + p, 8)
            if not eight_digits(chunk):
                break
            w = w * 100000000 + parse_eight(chunk)
            nd += 8
            q -= 8
            p += 8
        # then the last 1-7 digits in one step, while they fit the mantissa
        if w != 0 and p + 8 <= n:
            memcpy(&chunk, b + p, 8)
            k = leading_digits(chunk)
            if 0 < k < 8 and nd + k <= 19:
                w = w * TEN_TO[k] + parse_leading(chunk, k)
                nd += k
                q -= k
                p += k
        while p < n and 48 <= b[p] <= 57:
            c = b[p] - 48
            if w == 0 and c == 0:
                q -= 1
            elif nd < 19:
                w = w * 10 + c
                nd += 1
                q -= 1
            else:
                many = True
            p += 1
    if p < n and (b[p] == 101 or b[p] == 69):  # 'e' / 'E'
        frac = True
        p += 1
        if p < n and (b[p] == 43 or b[p] == 45):
            eneg = b[p] == 45
            p += 1
        if p >= n or not (48 <= b[p] <= 57):
            return fail(s, p, "invalid number")
        while p < n and 48 <= b[p] <= 57:
            if e < 100000:
                e = e * 10 + (b[p] - 48)
            p += 1
        q += -e if eneg else e
    s.pos = p
    out.is_int = False
    if not frac and not many:
        if w <= <uint64_t>9223372036854775807:
            out.is_int = True
            out.i = -<int64_t>w if neg else <int64_t>w
            out.d = <double>out.i
            return OK
        if neg and w == <uint64_t>9223372036854775808:
            out.is_int = True
            out.i = -(<int64_t>9223372036854775807) - 1
            out.d = <double>out.i
            return OK
    if many:
        out.d = slow_strtod(b, start, p)
        return OK
    if w == 0:
        d = 0.0
    elif w <= (<uint64_t>1 << 53) and -22 <= q <= 22:
        # Clinger: both operands exact, one rounding
        d = <double>w
        if q < 0:
            d = d / POW10[-q]
        else:
            d = d * POW10[q]
    elif not eisel_lemire(w, q, &d):
        out.d = slow_strtod(b, start, p)
        return OK
    out.d = -d if neg else d
    return OK


cdef int skip_value(Scan* s, int depth) noexcept nogil:
    """Validate and step over any JSON value at s.pos."""
    cdef Py_ssize_t ks, ke
    cdef bint esc, first
    cdef Num num
    cdef uint8_t c
    cdef int rc
    if depth > MAX_DEPTH:
        return fail(s, s.pos, "nesting too deep")
    if s.pos >= s.n:
        return fail(s, s.pos, "expected a value")
    c = s.buf[s.pos]
    if c == 34:
        return scan_string(s, &ks, &ke, &esc)
    if c == 123:  # {
        s.pos += 1
        first = True
        while True:
            rc = obj_key(s, &first, &ks, &ke, &esc)
            if rc <= 0:
                return rc
            rc = skip_value(s, depth + 1)
            if rc < 0:
                return rc
    if c == 91:  # [
        s.pos += 1
        first = True
        while True:
            rc = arr_next(s, &first)
            if rc <= 0:
                return rc
            rc = skip_value(s, depth + 1)
            if rc < 0:
                return rc
    if c == 45 or 48 <= c <= 57:
        return parse_number(s, &num)
    if lit(s, b"null", 4) or lit(s, b"true", 4) or lit(s, b"false", 5):
        return OK
    return fail(s, s.pos, "expected a value")


cdef inline bint lit(Scan* s, const char* word, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    if s.pos + k > s.n:
        return False
    for i in range(k):
        if s.buf[s.pos + i] != <uint8_t>word[i]:
            return False
    s.pos += k
    return True


cdef int obj_key(Scan* s, bint* first, Py_ssize_t* ks, Py_ssize_t* ke,
                 bint* esc) noexcept nogil:
    """Inside an object: 1 with the next key's span (s.pos at its value), 0 at the end."""
    cdef uint8_t c
    skip_ws(s)
    if s.pos >= s.n:
        return fail(s, s.pos, "unterminated object")
    c = s.buf[s.pos]
    if c == 125:  # }
        s.pos += 1
        return 0
    if not first[0]:
        if c != 44:
            return fail(s, s.pos, "expected ',' or '}'")
        s.pos += 1
        skip_ws(s)
        if s.pos >= s.n:
            return fail(s, s.pos, "unterminated object")
        c = s.buf[s.pos]
    first[0] = False
    if c != 34:
        return fail(s, s.pos, "expected a key")
    if scan_string(s, ks, ke, esc) < 0:
        return ERR
    skip_ws(s)
    if s.pos >= s.n or s.buf[s.pos] != 58:
        return fail(s, s.pos, "expected ':'")
    s.pos += 1
    skip_ws(s)
    if s.pos >= s.n:
        return fail(s, s.pos, "expected a value")
    return 1


cdef int arr_next(Scan* s, bint* first) noexcept nogil:
    """Inside an array: 1 when an element follows (s.pos at it), 0 at the end."""
    cdef uint8_t c
    skip_ws(s)
    if s.pos >= s.n:
        return fail(s, s.pos, "unterminated array")
    c = s.buf[s.pos]
    if first[0]:
        first[0] = False
        if c == 93:
            s.pos += 1
            return 0
        return 1
    if c == 93:
        s.pos += 1
        return 0
    if c != 44:
        return fail(s, s.pos, "expected ',' or ']'")
    s.pos += 1
    skip_ws(s)
    if s.pos >= s.n:
        return fail(s, s.pos, "expected a value")
    return 1


cdef inline bint key_is(Scan* s, Py_ssize_t ks, Py_ssize_t ke, const char* word,
                        Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    if ke - ks != k:
        return False
    for i in range(k):
        if s.buf[ks + i] != <uint8_t>word[i]:
            return False
    return True


cdef inline bint key_starts(Scan* s, Py_ssize_t ks, Py_ssize_t ke, const char* word,
                            Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    if ke - ks < k:
        return False
    for i in range(k):
        if s.buf[ks + i] != <uint8_t>word[i]:
            return False
    return True


cdef inline bint key_ends(Scan* s, Py_ssize_t ks, Py_ssize_t ke, const char* word,
                          Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    if ke - ks < k:
        return False
    for i in range(k):
        if s.buf[ke - k + i] != <uint8_t>word[i]:
            return False
    return True


# -- walking objects and arrays --------------------------------------------------------------
# Each payload format is a set of handlers over two walkers: ``walk_object`` hands every
# member's value to a key handler, ``walk_first`` hands an array's first element to a value
# handler and steps over the rest. A handler returns OK (it consumed the value), SKIP (step
# over it) or an error code.

cdef enum:
    SKIP = 1

ctypedef int (*OnKey)(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil
ctypedef int (*OnValue)(Scan* s, void* ctx) noexcept nogil


cdef int walk_object(Scan* s, int depth, OnKey on_key, void* ctx) noexcept nogil:
    """The object at s.pos, each member's value to ``on_key``. SLOW when it is not an object
    or a key has escapes (the twin decides)."""
    cdef bint first = True
    cdef bint esc
    cdef Py_ssize_t ks, ke
    cdef int rc
    if s.buf[s.pos] != 123:
        return SLOW
    s.pos += 1
    while True:
        rc = obj_key(s, &first, &ks, &ke, &esc)
        if rc <= 0:
            return rc
        if esc:
            return SLOW
        rc = on_key(s, ctx, ks, ke)
        if rc == SKIP:
            rc = skip_value(s, depth)
        if rc < 0:
            return rc


cdef int walk_first(Scan* s, int depth, OnValue on_first, void* ctx) noexcept nogil:
    """The array at s.pos: its first element to ``on_first``, the others stepped over. SLOW
    when it is not an array or is empty (the twin decides)."""
    cdef bint first = True
    cdef bint seen = False
    cdef int rc
    if s.buf[s.pos] != 91:
        return SLOW
    s.pos += 1
    while True:
        rc = arr_next(s, &first)
        if rc < 0:
            return rc
        if rc == 0:
            return OK if seen else SLOW
        rc = skip_value(s, depth) if seen else on_first(s, ctx)
        seen = True
        if rc < 0:
            return rc


cdef int scan_plain_string(Scan* s, Py_ssize_t* vs, Py_ssize_t* ve) noexcept nogil:
    """A string value without escapes (SLOW otherwise: the twin decides)."""
    cdef bint esc
    if s.buf[s.pos] != 34:
        return SLOW
    if scan_string(s, vs, ve, &esc) < 0:
        return ERR
    return SLOW if esc else OK


# -- columns ---------------------------------------------------------------------------------

cdef inline void col_reset(Col* c) noexcept nogil:
    c.len = 0
    c.nulls = 0
    c.present = 0


cdef inline void col_free(Col* c) noexcept nogil:
    free(c.data)
    free(c.valid)
    c.data = NULL
    c.valid = NULL
    c.cap = 0
    c.len = 0


cdef inline int col_grow(Col* c) noexcept nogil:
    cdef Py_ssize_t cap = c.cap * 2 if c.cap else 512
    cdef char* d = <char*>realloc(c.data, cap * 8)
    if d == NULL:
        return NOMEM
    c.data = d
    cdef uint8_t* v = <uint8_t*>realloc(c.valid, cap)
    if v == NULL:
        return NOMEM
    c.valid = v
    c.cap = cap
    return OK


cdef inline int col_push(Col* c, const void* cell, bint valid) noexcept nogil:
    if c.len == c.cap and col_grow(c) < 0:
        return NOMEM
    if valid:
        memcpy(c.data + c.len * 8, cell, 8)
        c.valid[c.len] = 1
    else:
        memset(c.data + c.len * 8, 0, 8)
        c.valid[c.len] = 0
        c.nulls += 1
    c.len += 1
    return OK


cdef int parse_num_array(Scan* s, Col* c, int kind) noexcept nogil:
    """An array of numbers into ``c``. kind 0: floats or null; 1: int64 or null;
    2: int64, no null (timestamps)."""
    cdef bint first = True
    cdef int rc
    cdef Num num
    cdef uint8_t ch
    col_reset(c)
    c.present = 1
    if s.buf[s.pos] != 91:
        return SLOW
    s.pos += 1
    while True:
        rc = arr_next(s, &first)
        if rc <= 0:
            return rc
        ch = s.buf[s.pos]
        if ch == 110:  # n
            if not lit(s, b"null", 4):
                return fail(s, s.pos, "expected a value")
            if kind == 2:
                return SLOW
            if col_push(c, &num.d, False) < 0:
                return NOMEM
            continue
        if not (ch == 45 or 48 <= ch <= 57):
            # another JSON value (the twin reports the type); anything else is a syntax error
            if ch == 34 or ch == 123 or ch == 91 or ch == 116 or ch == 102:
                return SLOW
            return fail(s, s.pos, "expected a value")
        if parse_number(s, &num) < 0:
            return ERR
        if kind == 0:
            rc = col_push(c, &num.d, True)
        elif not num.is_int:
            return SLOW
        else:
            rc = col_push(c, &num.i, True)
        if rc < 0:
            return NOMEM


# -- Yahoo chart -------------------------------------------------------------------------

cdef enum:
    C_TS = 0
    C_OPEN = 1
    C_HIGH = 2
    C_LOW = 3
    C_CLOSE = 4
    C_ADJ = 5
    C_VOL = 6
    NCOLS = 7
    M_SYMBOL = 0
    M_TZ = 1
    M_CURRENCY = 2
    M_EXCHANGE = 3
    M_ITYPE = 4
    M_GRANULARITY = 5
    NMETA = 6

cdef struct Chart:
    Col cols[7]
    Py_ssize_t meta_s[6]
    Py_ssize_t meta_e[6]
    bint has_gmtoff
    int64_t gmtoff
    Py_ssize_t ev_s
    Py_ssize_t ev_e
    bint has_chart
    bint has_result


cdef void chart_reset_result(Chart* c) noexcept nogil:
    cdef int i
    for i in range(NCOLS):
        col_reset(&c.cols[i])
    for i in range(NMETA):
        c.meta_s[i] = -1
    c.has_gmtoff = False
    c.ev_s = -1
    c.has_result = False


cdef int chart_meta_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    cdef int slot = -1
    cdef Num num
    if key_is(s, ks, ke, b"symbol", 6):
        slot = M_SYMBOL
    elif key_is(s, ks, ke, b"exchangeTimezoneName", 20):
        slot = M_TZ
    elif key_is(s, ks, ke, b"currency", 8):
        slot = M_CURRENCY
    elif key_is(s, ks, ke, b"exchangeName", 12):
        slot = M_EXCHANGE
    elif key_is(s, ks, ke, b"instrumentType", 14):
        slot = M_ITYPE
    elif key_is(s, ks, ke, b"dataGranularity", 15):
        slot = M_GRANULARITY
    elif key_is(s, ks, ke, b"gmtoffset", 9):
        if not (s.buf[s.pos] == 45 or 48 <= s.buf[s.pos] <= 57):
            return SLOW
        if parse_number(s, &num) < 0:
            return ERR
        if not num.is_int:
            return SLOW
        c.has_gmtoff = True
        c.gmtoff = num.i
        return OK
    if slot < 0:
        return SKIP
    return scan_plain_string(s, &c.meta_s[slot], &c.meta_e[slot])


cdef int chart_quote_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    if key_is(s, ks, ke, b"open", 4):
        return parse_num_array(s, &c.cols[C_OPEN], 0)
    if key_is(s, ks, ke, b"high", 4):
        return parse_num_array(s, &c.cols[C_HIGH], 0)
    if key_is(s, ks, ke, b"low", 3):
        return parse_num_array(s, &c.cols[C_LOW], 0)
    if key_is(s, ks, ke, b"close", 5):
        return parse_num_array(s, &c.cols[C_CLOSE], 0)
    if key_is(s, ks, ke, b"volume", 6):
        return parse_num_array(s, &c.cols[C_VOL], 1)
    return SKIP


cdef int chart_adjclose_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    if key_is(s, ks, ke, b"adjclose", 8):
        return parse_num_array(s, &(<Chart*>ctx).cols[C_ADJ], 0)
    return SKIP


cdef int chart_quote0(Scan* s, void* ctx) noexcept nogil:
    return walk_object(s, 6, chart_quote_key, ctx)


cdef int chart_adjclose0(Scan* s, void* ctx) noexcept nogil:
    return walk_object(s, 6, chart_adjclose_key, ctx)


cdef int chart_indicators_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    cdef int col
    if key_is(s, ks, ke, b"quote", 5):
        for col in range(C_OPEN, C_CLOSE + 1):
            col_reset(&c.cols[col])
        col_reset(&c.cols[C_VOL])
        return walk_first(s, 5, chart_quote0, ctx)
    if key_is(s, ks, ke, b"adjclose", 8):
        col_reset(&c.cols[C_ADJ])
        return walk_first(s, 5, chart_adjclose0, ctx)
    return SKIP


cdef int chart_result0_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    cdef int rc, i
    if key_is(s, ks, ke, b"meta", 4):
        for i in range(NMETA):
            c.meta_s[i] = -1
        c.has_gmtoff = False
        return walk_object(s, 3, chart_meta_key, ctx)
    if key_is(s, ks, ke, b"timestamp", 9):
        return parse_num_array(s, &c.cols[C_TS], 2)
    if key_is(s, ks, ke, b"indicators", 10):
        for i in range(1, NCOLS):
            col_reset(&c.cols[i])
        return walk_object(s, 4, chart_indicators_key, ctx)
    if key_is(s, ks, ke, b"events", 6):  # kept as a span, decoded by the twin's rules
        c.ev_s = s.pos
        rc = skip_value(s, 3)
        c.ev_e = s.pos
        return rc
    return SKIP


cdef int chart_result0(Scan* s, void* ctx) noexcept nogil:
    return walk_object(s, 3, chart_result0_key, ctx)


cdef int chart_chart_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    cdef int rc
    if key_is(s, ks, ke, b"result", 6):
        chart_reset_result(c)
        rc = walk_first(s, 2, chart_result0, ctx)
        c.has_result = rc == OK
        return rc
    if key_is(s, ks, ke, b"error", 5):
        # Yahoo's error answer: the twin raises the typed error
        return OK if lit(s, b"null", 4) else SLOW
    return SKIP


cdef int chart_top_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Chart* c = <Chart*>ctx
    if key_is(s, ks, ke, b"chart", 5):
        chart_reset_result(c)
        c.has_chart = s.buf[s.pos] == 123
        return walk_object(s, 2, chart_chart_key, ctx)
    return SKIP


cdef int walk_document(Scan* s, OnKey on_key, void* ctx) noexcept nogil:
    """A whole document: one object (SLOW otherwise), then nothing but whitespace."""
    cdef int rc
    skip_ws(s)
    if s.pos >= s.n:
        return SLOW
    rc = walk_object(s, 1, on_key, ctx)
    if rc < 0:
        return rc
    skip_ws(s)
    if s.pos != s.n:
        return fail(s, s.pos, "extra data after the document")
    return OK


cdef int chart_walk(Scan* s, Chart* c) noexcept nogil:
    cdef int rc
    c.has_chart = False
    chart_reset_result(c)
    rc = walk_document(s, chart_top_key, c)
    if rc < 0:
        return rc
    if not c.has_chart or not c.has_result:
        return SLOW
    return OK


# -- Yahoo chart events ------------------------------------------------------------------
# ``events`` as the twin reads it (``_twin._events``), for the shape Yahoo sends: objects of
# dividends and splits keyed by their date, each an object of numbers. Anything else (a key
# seen twice, whose last value json keeps, a null or missing field, a fractional date, more
# than MAX_EVENTS entries, an infinite amount) is SLOW: the twin decides.

cdef enum:
    MAX_EVENTS = 256
    E_DATE = 1
    E_V0 = 2      # dividend amount, split numerator
    E_V1 = 4      # split denominator

cdef struct Event:
    int64_t date
    double v[2]
    Py_ssize_t ks, ke   # its key, to find one given twice
    int seen            # E_* bits

cdef struct Events:
    Event items[2][MAX_EVENTS]   # [0] dividends, [1] splits
    int n[2]
    int kind              # the list being read
    int seen              # 1 << kind for each list read
    Event* cur


cdef int event_number(Scan* s, Event* e, int bit, bint integer) noexcept nogil:
    cdef Num num
    cdef uint8_t ch = s.buf[s.pos]
    if e.seen & bit or not (ch == 45 or 48 <= ch <= 57):
        return SLOW
    if parse_number(s, &num) < 0:
        return ERR
    e.seen |= bit
    if integer:
        if not num.is_int:
            return SLOW
        e.date = num.i
    elif not (-1.7976931348623157e308 <= num.d <= 1.7976931348623157e308):
        return SLOW  # json.dumps writes Infinity, which is not JSON: the twin decides
    else:
        e.v[0 if bit == E_V0 else 1] = num.d
    return OK


cdef int event_field_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Events* ev = <Events*>ctx
    if key_is(s, ks, ke, b"date", 4):
        return event_number(s, ev.cur, E_DATE, True)
    if ev.kind == 0 and key_is(s, ks, ke, b"amount", 6):
        return event_number(s, ev.cur, E_V0, False)
    if ev.kind == 1 and key_is(s, ks, ke, b"numerator", 9):
        return event_number(s, ev.cur, E_V0, False)
    if ev.kind == 1 and key_is(s, ks, ke, b"denominator", 11):
        return event_number(s, ev.cur, E_V1, False)
    return SKIP


cdef int event_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Events* ev = <Events*>ctx
    cdef int k = ev.kind
    cdef int i, rc
    cdef Event* e
    if ev.n[k] == MAX_EVENTS:
        return SLOW
    for i in range(ev.n[k]):
        e = &ev.items[k][i]
        if e.ke - e.ks == ke - ks and memcmp(s.buf + ks, s.buf + e.ks, ke - ks) == 0:
            return SLOW
    e = &ev.items[k][ev.n[k]]
    e.ks = ks
    e.ke = ke
    e.seen = 0
    ev.cur = e
    rc = walk_object(s, 6, event_field_key, ctx)
    if rc < 0:
        return rc
    if e.seen != (E_DATE | E_V0 if k == 0 else E_DATE | E_V0 | E_V1):
        return SLOW
    ev.n[k] += 1
    return OK


cdef int events_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef Events* ev = <Events*>ctx
    if key_is(s, ks, ke, b"dividends", 9):
        ev.kind = 0
    elif key_is(s, ks, ke, b"splits", 6):
        ev.kind = 1
    else:
        return SKIP
    if ev.seen & (1 << ev.kind):
        return SLOW
    ev.seen |= 1 << ev.kind
    return walk_object(s, 5, event_key, ctx)


cdef void events_sort(Event* items, int n) noexcept nogil:
    """By date, stable (insertion sort: a few entries, as Python's sort keeps ties)."""
    cdef int i, j
    cdef Event e
    for i in range(1, n):
        e = items[i]
        j = i - 1
        while j >= 0 and items[j].date > e.date:
            items[j + 1] = items[j]
            j -= 1
        items[j + 1] = e


cdef object _events_json(Scan* s, Py_ssize_t start, Py_ssize_t end):
    """The ``stockbatch.events`` metadata of the events object at ``start``, as the twin
    writes it; None when there are none; False when the twin must decide."""
    cdef Events* ev = <Events*>malloc(sizeof(Events))
    cdef Scan sub
    cdef int rc, i
    if ev == NULL:
        raise MemoryError()
    try:
        sub = s[0]
        sub.pos = start
        sub.n = end
        ev.n[0] = 0
        ev.n[1] = 0
        ev.seen = 0
        with nogil:
            rc = walk_object(&sub, 4, events_key, ev)
            if rc == OK:
                events_sort(ev.items[0], ev.n[0])
                events_sort(ev.items[1], ev.n[1])
        if rc != OK:
            return False
        if ev.n[0] == 0 and ev.n[1] == 0:
            return None
        # json.dumps's own spelling: ints as str(), floats as float.__repr__
        divs = [f"[{ev.items[0][i].date},{ev.items[0][i].v[0]!r}]" for i in range(ev.n[0])]
        splits = [f"[{ev.items[1][i].date},{ev.items[1][i].v[0]!r},{ev.items[1][i].v[1]!r}]"
                  for i in range(ev.n[1])]
        return '{"dividends":[' + ",".join(divs) + '],"splits":[' + ",".join(splits) + "]}"
    finally:
        free(ev)


# -- Alpha Vantage -----------------------------------------------------------------------

cdef enum:
    A_TS = 0
    A_OPEN = 1
    A_HIGH = 2
    A_LOW = 3
    A_CLOSE = 4
    A_VOL = 5
    ANCOLS = 6

cdef struct AV:
    Col cols[6]
    Py_ssize_t tz_s
    Py_ssize_t tz_e
    Py_ssize_t sym_s
    Py_ssize_t sym_e
    Py_ssize_t key_s
    Py_ssize_t key_e
    bint has_meta


cdef inline int two(const uint8_t* b, Py_ssize_t p) noexcept nogil:
    if not (48 <= b[p] <= 57 and 48 <= b[p + 1] <= 57):
        return -1
    return (b[p] - 48) * 10 + (b[p + 1] - 48)


cdef int av_date(Scan* s, Py_ssize_t ks, Py_ssize_t ke, int64_t* out) noexcept nogil:
    """'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' -> seconds of that wall time as if UTC."""
    cdef const uint8_t* b = s.buf
    cdef Py_ssize_t k = ke - ks
    cdef int y1, y2, mo, d, h = 0, mi = 0, sec = 0
    cdef int64_t y, era, yoe, doy, doe, days
    if k != 10 and k != 19:
        return SLOW
    y1 = two(b, ks)
    y2 = two(b, ks + 2)
    mo = two(b, ks + 5)
    d = two(b, ks + 8)
    if y1 < 0 or y2 < 0 or mo < 0 or d < 0 or b[ks + 4] != 45 or b[ks + 7] != 45:
        return SLOW
    if k == 19:
        h = two(b, ks + 11)
        mi = two(b, ks + 14)
        sec = two(b, ks + 17)
        if h < 0 or mi < 0 or sec < 0 or b[ks + 10] != 32 or b[ks + 13] != 58 \
                or b[ks + 16] != 58:
            return SLOW
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and sec < 60):
        return SLOW
    y = y1 * 100 + y2 - (1 if mo <= 2 else 0)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    out[0] = days * 86400 + h * 3600 + mi * 60 + sec
    return OK


cdef int av_string_number(Scan* s, Col* c, bint integer) noexcept nogil:
    """A string value holding a JSON number (or an integer for volume) into ``c``."""
    cdef Py_ssize_t vs, ve
    cdef bint esc
    cdef Scan sub
    cdef Num num
    if s.buf[s.pos] != 34:
        return SLOW
    if scan_string(s, &vs, &ve, &esc) < 0:
        return ERR
    if esc or ve == vs:
        return SLOW
    sub.buf = s.buf
    sub.n = ve
    sub.pos = vs
    if not (s.buf[vs] == 45 or 48 <= s.buf[vs] <= 57):
        return SLOW
    if parse_number(&sub, &num) < 0 or sub.pos != ve:
        return SLOW
    if integer:
        if not num.is_int:
            return SLOW
        return col_push(c, &num.i, True)
    return col_push(c, &num.d, True)


cdef struct AVRow:
    AV* a
    int seen            # bit per column found in this row


cdef int av_field_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef AVRow* row = <AVRow*>ctx
    cdef int col = -1
    if key_is(s, ks, ke, b"1. open", 7):
        col = A_OPEN
    elif key_is(s, ks, ke, b"2. high", 7):
        col = A_HIGH
    elif key_is(s, ks, ke, b"3. low", 6):
        col = A_LOW
    elif key_is(s, ks, ke, b"4. close", 8):
        col = A_CLOSE
    elif key_is(s, ks, ke, b"5. volume", 9):
        col = A_VOL
    if col < 0:
        return SKIP
    if row.seen & (1 << col):
        return SLOW
    row.seen |= 1 << col
    return av_string_number(s, &row.a.cols[col], col == A_VOL)


cdef int av_series_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    """One bar: its date key, then its fields (a missing one is null)."""
    cdef AV* a = <AV*>ctx
    cdef Col* ts = &a.cols[A_TS]
    cdef AVRow row
    cdef int64_t t
    cdef double zero = 0.0
    cdef int rc, i
    rc = av_date(s, ks, ke, &t)
    if rc < 0:
        return rc
    if ts.len and t >= (<int64_t*>ts.data)[ts.len - 1]:
        return SLOW  # not strictly newest first (or a repeated date): the twin decides
    if col_push(ts, &t, True) < 0:
        return NOMEM
    row.a = a
    row.seen = 0
    rc = walk_object(s, 4, av_field_key, &row)
    if rc < 0:
        return rc
    for i in range(A_OPEN, ANCOLS):
        if not (row.seen & (1 << i)):
            if col_push(&a.cols[i], &zero, False) < 0:
                return NOMEM
    return OK


cdef int av_meta_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef AV* a = <AV*>ctx
    if key_ends(s, ks, ke, b"Time Zone", 9):
        return scan_plain_string(s, &a.tz_s, &a.tz_e)
    if key_ends(s, ks, ke, b"Symbol", 6):
        return scan_plain_string(s, &a.sym_s, &a.sym_e)
    return SKIP


cdef int av_top_key(Scan* s, void* ctx, Py_ssize_t ks, Py_ssize_t ke) noexcept nogil:
    cdef AV* a = <AV*>ctx
    cdef int i
    if key_is(s, ks, ke, b"Meta Data", 9):
        a.tz_s = -1
        a.sym_s = -1
        a.has_meta = True
        return walk_object(s, 2, av_meta_key, ctx)
    if key_starts(s, ks, ke, b"Time Series (", 13):
        if a.key_s >= 0:
            return SLOW
        a.key_s = ks
        a.key_e = ke
        for i in range(ANCOLS):
            a.cols[i].present = 1
        return walk_object(s, 2, av_series_key, ctx)
    if key_is(s, ks, ke, b"Error Message", 13) or key_is(s, ks, ke, b"Note", 4) \
            or key_is(s, ks, ke, b"Information", 11):
        return SLOW  # the provider's error or quota answer: the twin raises it
    return SKIP


cdef int av_walk(Scan* s, AV* a) noexcept nogil:
    cdef int rc, i
    for i in range(ANCOLS):
        col_reset(&a.cols[i])
    a.key_s = -1
    a.tz_s = -1
    a.sym_s = -1
    a.has_meta = False
    rc = walk_document(s, av_top_key, a)
    if rc < 0:
        return rc
    if not a.has_meta or a.key_s < 0 or a.tz_s < 0:
        return SLOW
    return OK


# -- building Arrow arrays -----------------------------------------------------------------

cdef object UTC_US = BARS.field("ts").type
cdef object F64 = pa.float64()
cdef object I64 = pa.int64()
cdef object STR = pa.string()
cdef dict _schemas = {}
cdef dict _repeats = {}
# bound once: each decode calls them ~15 times (module and class attribute lookups saved)
cdef object _py_buffer = pa.py_buffer
cdef object _from_buffers = pa.Array.from_buffers
cdef object _from_arrays = pa.RecordBatch.from_arrays


cdef object _bitmap(Col* c, Py_ssize_t n, bint reverse):
    """Arrow validity bitmap of ``c`` (None when there is no null)."""
    cdef Py_ssize_t i, j
    cdef object out
    cdef uint8_t* bits
    if c.nulls == 0:
        return None
    out = PyBytes_FromStringAndSize(NULL, (n + 7) // 8)
    bits = <uint8_t*>PyBytes_AS_STRING(out)
    memset(bits, 0, (n + 7) // 8)
    for i in range(n):
        j = n - 1 - i if reverse else i
        if c.valid[j]:
            bits[i >> 3] |= <uint8_t>(1 << (i & 7))
    return _py_buffer(out)


cdef object _values(Col* c, Py_ssize_t n, bint reverse, int64_t scale):
    cdef object out = PyBytes_FromStringAndSize(NULL, n * 8)
    cdef char* dst = PyBytes_AS_STRING(out)
    cdef int64_t* di
    cdef const int64_t* si
    cdef Py_ssize_t i
    if scale != 1:
        di = <int64_t*>dst
        si = <const int64_t*>c.data
        for i in range(n):
            di[i] = si[n - 1 - i if reverse else i] * scale
    elif reverse:
        for i in range(n):
            memcpy(dst + i * 8, c.data + (n - 1 - i) * 8, 8)
    elif n:
        memcpy(dst, c.data, n * 8)
    return _py_buffer(out)


cdef object _f64(Col* c, Py_ssize_t n, bint reverse):
    if not c.present:
        return pa.nulls(n, F64)
    return _from_buffers(F64, n, [_bitmap(c, n, reverse), _values(c, n, reverse, 1)],
                         null_count=c.nulls)


cdef object _i64(Col* c, Py_ssize_t n, bint reverse):
    if not c.present:
        return pa.nulls(n, I64)
    return _from_buffers(I64, n, [_bitmap(c, n, reverse), _values(c, n, reverse, 1)],
                         null_count=c.nulls)


cdef object _repeat(str value, Py_ssize_t n):
    """A string column holding ``value`` n times (cached: Arrow arrays are immutable)."""
    key = (value, n)
    arr = _repeats.get(key)
    if arr is not None:
        return arr
    cdef bytes raw = value.encode("utf-8")
    cdef Py_ssize_t k = len(raw), i
    if <int64_t>k * n > 2147483647:
        return pa.array([value] * n, STR)
    offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)
    cdef int32_t* o = <int32_t*>PyBytes_AS_STRING(offsets)
    data = PyBytes_FromStringAndSize(NULL, k * n)
    cdef char* d = PyBytes_AS_STRING(data)
    cdef const char* src = raw
    for i in range(n + 1):
        o[i] = <int32_t>(i * k)
    for i in range(n):
        memcpy(d + i * k, src, k)
    arr = _from_buffers(STR, n, [None, _py_buffer(offsets), _py_buffer(data)])
    if len(_repeats) > 4096:
        _repeats.clear()
    _repeats[key] = arr
    return arr


cdef object _schema(tuple extra):
    schema = _schemas.get(extra)
    if schema is None:
        md = dict(BARS.metadata)
        for k, v in extra:
            md[f"stockbatch.{k}".encode()] = v.encode()
        schema = BARS.with_metadata(md)
        if len(_schemas) > 1024:
            _schemas.clear()
        _schemas[extra] = schema
    return schema


cdef str _span(const uint8_t* b, Py_ssize_t start, Py_ssize_t end):
    return PyUnicode_DecodeUTF8(<const char*>b + start, end - start, NULL)


cdef object _decode_error(Scan* s, str source, symbol):
    where = s.err.decode()
    return DecodeError(f"{source}: cannot decode the payload for {symbol or '?'}: {where} "
                       f"at byte {s.err_pos}", provider=source, symbol=symbol,
                       position=s.err_pos)


cdef bytes _as_bytes(data):
    if isinstance(data, bytes):
        return <bytes>data
    if isinstance(data, str):
        return (<str>data).encode("utf-8", "surrogatepass")
    return bytes(data)


def decode_yahoo_chart(data, *, symbol=None, interval=None, str source="yahoo"):
    """Decode a Yahoo ``/v8/finance/chart`` payload into a BARS record batch.

    See :func:`stockbatch._py.decode.decode_yahoo_chart` (the specification).
    """
    cdef bytes raw = _as_bytes(data)
    cdef Scan s
    cdef Chart c
    cdef int rc, i
    cdef Py_ssize_t n
    cdef int64_t t
    cdef const int64_t* tsv
    s.buf = <const uint8_t*>PyBytes_AS_STRING(raw)
    s.n = len(raw)
    s.pos = 0
    s.err = NULL
    s.err_pos = -1
    memset(&c, 0, sizeof(Chart))
    try:
        with nogil:
            rc = chart_walk(&s, &c)
        if rc == ERR:
            raise _decode_error(&s, source, symbol)
        if rc == NOMEM:
            raise MemoryError()
        if rc == SLOW:
            return _twin.decode_yahoo_chart(raw, symbol=symbol, interval=interval,
                                            source=source)
        sym = symbol
        if sym is None and c.meta_s[M_SYMBOL] >= 0:
            sym = _span(s.buf, c.meta_s[M_SYMBOL], c.meta_e[M_SYMBOL])
        ivl = interval
        if ivl is None and c.meta_s[M_GRANULARITY] >= 0:
            ivl = _span(s.buf, c.meta_s[M_GRANULARITY], c.meta_e[M_GRANULARITY])
        n = c.cols[C_TS].len
        slow = sym is None or ivl is None
        for i in range(1, NCOLS):
            if c.cols[i].present and c.cols[i].len != n:
                slow = True
        tsv = <const int64_t*>c.cols[C_TS].data
        for i in range(n):
            t = tsv[i]
            if t > 9223372036854 or t < -9223372036854:  # t * 1e6 must fit int64
                slow = True
                break
        extra = []
        if not slow:
            for key, slot in (("tz", M_TZ), ("currency", M_CURRENCY),
                              ("exchange", M_EXCHANGE), ("instrument_type", M_ITYPE)):
                if c.meta_s[slot] >= 0:
                    value = _span(s.buf, c.meta_s[slot], c.meta_e[slot])
                    extra.append((key, value))
                    if key == "tz" and not _twin._known_tz(value):
                        slow = True  # a zone Arrow does not know: the twin raises DecodeError
            if c.has_gmtoff:
                extra.append(("gmtoffset", str(c.gmtoff)))
            if c.ev_s >= 0:
                events = _events_json(&s, c.ev_s, c.ev_e)
                if events is False:
                    try:
                        events = _twin._events(json.loads(raw[c.ev_s:c.ev_e]))
                    except _twin._Bad:
                        slow = True
                if events is not None and not slow:
                    extra.append(("events", events))
        if slow:
            return _twin.decode_yahoo_chart(raw, symbol=symbol, interval=interval,
                                            source=source)
        if c.cols[C_TS].present:
            ts = _from_buffers(UTC_US, n, [None, _values(&c.cols[C_TS], n, False,
                                                         1000000)])
        else:
            ts = pa.nulls(0, UTC_US)
        arrays = [_repeat(sym, n), _repeat(ivl, n), ts,
                  _f64(&c.cols[C_OPEN], n, False), _f64(&c.cols[C_HIGH], n, False),
                  _f64(&c.cols[C_LOW], n, False), _f64(&c.cols[C_CLOSE], n, False),
                  _f64(&c.cols[C_ADJ], n, False), _i64(&c.cols[C_VOL], n, False),
                  _repeat(source, n)]
        return _from_arrays(arrays, schema=_schema(tuple(extra)))
    finally:
        for i in range(NCOLS):
            col_free(&c.cols[i])


def decode_alphavantage(data, *, symbol=None, interval=None, str source="alphavantage"):
    """Decode an Alpha Vantage TIME_SERIES_DAILY / TIME_SERIES_INTRADAY payload.

    See :func:`stockbatch._py.decode.decode_alphavantage` (the specification).
    """
    cdef bytes raw = _as_bytes(data)
    cdef Scan s
    cdef AV a
    cdef int rc, i
    cdef Py_ssize_t n
    s.buf = <const uint8_t*>PyBytes_AS_STRING(raw)
    s.n = len(raw)
    s.pos = 0
    s.err = NULL
    s.err_pos = -1
    memset(&a, 0, sizeof(AV))
    try:
        with nogil:
            rc = av_walk(&s, &a)
        if rc == ERR:
            raise _decode_error(&s, source, symbol)
        if rc == NOMEM:
            raise MemoryError()
        sym = symbol
        if rc == OK and sym is None and a.sym_s >= 0:
            sym = _span(s.buf, a.sym_s, a.sym_e)
        if rc == SLOW or sym is None:
            return _twin.decode_alphavantage(raw, symbol=symbol, interval=interval,
                                             source=source)
        tz = _span(s.buf, a.tz_s, a.tz_e)
        full = _span(s.buf, a.key_s, a.key_e)  # "Time Series (Daily)"
        label = full[13:len(full) - 1] if len(full) > 13 else ""
        ivl = interval if interval is not None else _twin._av_interval(label)
        n = a.cols[A_TS].len
        naive = _from_buffers(pa.timestamp("us"), n,
                              [None, _values(&a.cols[A_TS], n, True, 1000000)])
        try:
            ts = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
        except (pa.ArrowInvalid, ValueError):
            return _twin.decode_alphavantage(raw, symbol=symbol, interval=interval,
                                             source=source)
        arrays = [_repeat(sym, n), _repeat(ivl, n), ts.cast(UTC_US),
                  _f64(&a.cols[A_OPEN], n, True), _f64(&a.cols[A_HIGH], n, True),
                  _f64(&a.cols[A_LOW], n, True), _f64(&a.cols[A_CLOSE], n, True),
                  pa.nulls(n, F64), _i64(&a.cols[A_VOL], n, True), _repeat(source, n)]
        return _from_arrays(arrays, schema=_schema((("tz", tz),)))
    finally:
        for i in range(ANCOLS):
            col_free(&a.cols[i])
