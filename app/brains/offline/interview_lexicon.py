"""Hera's offline Japanese: what she recognises (patterns over NFKC-normalised text) and how
she says things back.

Kept apart from the interview logic so the vocabulary can grow without touching it. Word
lists are written as compact text blocks and turned into tuples once; all is immutable.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Final

from app.brains.offline._lexicon import HIRAGANA, KANJI, KATAKANA, alternation
from app.domain.profile import Profile

Stems = tuple[tuple[str, tuple[str, ...]], ...]  # (canonical word, stems found in text)


def _stems(spec: str) -> Stems:
    """`canonical=stem,stem` items separated by whitespace; a bare word is its own stem."""
    items = (item.partition("=") for item in spec.split())
    return tuple((word, tuple(stems.split(",")) if stems else (word,)) for word, _, stems in items)


def _scored(spec: str) -> tuple[tuple[str, str, float], ...]:
    """Lines of `trait score stem stem ...` -> (stem, trait, score)."""
    rows = (line.split() for line in spec.strip().splitlines())
    return tuple((stem, trait, float(score)) for trait, score, *stems in rows for stem in stems)


def _split(spec: str) -> tuple[str, ...]:
    return tuple(spec.split())


# --- characters -----------------------------------------------------------------------
NAME_CHAR: Final = f"[{HIRAGANA}{KATAKANA}{KANJI}A-Za-z]"
NAME_WORD: Final = re.compile(f"{NAME_CHAR}+")
HIRAGANA_WORD: Final = re.compile(f"[{HIRAGANA}]+")


# --- whom a clause is about -------------------------------------------------------------
USER_MARKERS: Final = ("私", "わたし", "僕", "ぼく", "俺", "おれ", "自分", "あたし")
PARTNER_MARKERS: Final = _split(
    "奥さん 奥様 旦那 主人 婚約者 彼女 彼氏 恋人 パートナー 相手 理想 妻 夫 嫁 彼"
)
CHILD_MARKERS: Final = _split(
    "子ども 子供 こども お子 息子 娘 男の子 女の子 長男 長女 次男 次女 三男 三女 赤ちゃん"
)
_ANY_MARKER: Final = alternation(frozenset({*USER_MARKERS, *PARTNER_MARKERS, *CHILD_MARKERS}))
CLAUSE_BREAK: Final = re.compile(
    rf"[。!?\n]+|[、,](?=\s*(?:{_ANY_MARKER}))|(?<!の)(?=(?:{_ANY_MARKER})(?:は|が|も))"
)
SUBJECT_MARKERS: Final = re.compile(
    f"(?P<user>{alternation(USER_MARKERS)})|(?P<partner>{alternation(PARTNER_MARKERS)})"
    f"|(?P<child>{alternation(CHILD_MARKERS)})"
)
STRONG_PARTNER_CUE: Final = re.compile(  # not 1人がいい (a count)
    r"(?<![\d一二三四五六七八九十何])(?:人|方|女性|男性)(?:が|で)?(?:好き|いい|良い|理想|タイプ)|(?:理想|タイプ)は"
)
WEAK_PARTNER_CUE: Final = re.compile(r"(?:な|い)人(?!間|見知り|生)")
CHILD_WISH: Final = re.compile(r"欲し|ほし|望|名前|名付")
# A clause about the partner alone ("彼女は大阪に住んでいます"): not the person's home or pay.
PARTNER_TOPIC: Final = re.compile(
    rf"^(?:理想の)?(?:{alternation(PARTNER_MARKERS)})(?:さん)?(?:の(?:年収|収入|給料)|は|が|も)"
)
YES: Final = re.compile(
    r"^(?:はい|うん|ええ|そう|そうです|そのとおり|その通り|合って|あって|yes|ok)", re.I
)
NO: Final = re.compile(r"いいえ|違|ちが|ではな|じゃな|ません")
# Greetings and polite verbs: a short message like this is not a bare answer (name, place).
NOT_AN_ANSWER: Final = re.compile(
    r"ます(?:$|[。!ねよ])|ません|ください|よろしく|こんにちは|こんばんは|おはよう|はじめまして"
    r"|ありがと|^はい|^いいえ|わから|分から|^(?:特に)?(?:なし|無し|ない)"
    r"|こだわり(?:は|が)?(?:ない|ありません|なし)|特に(?:ない|ありません)"
)
# "特にこだわりはない": no description at all.
NO_PREFERENCE: Final = re.compile(
    r"こだわり(?:は|が)?(?:ない|ありません|なし)|^特に(?:ない|なし|ありません)|わから|分から"
    r"|何でも|なんでも|お任せ|おまかせ"
)

# --- gender and relationship ------------------------------------------------------------
_GENDER_END: Final = r"(?=です|でした|だよ|だ|で|、|。|,|!|\s|$)"
GENDER_PATTERNS: Final = (
    (
        "その他",
        re.compile(r"ノンバイナリー|[xX]ジェンダー|性別は(?:その他|秘密|内緒|答えたくない)"),
    ),
    ("女性", re.compile(rf"女性|女子|(?<![彼長次三末])女{_GENDER_END}|female|woman")),
    ("男性", re.compile(rf"男性|男子|(?<![彼長次三末])男{_GENDER_END}|\bmale\b|\bman\b")),
)
_NEG: Final = r"(?:い|お)(?:ない|ません|らず)"
STATUS_PATTERNS: Final = (  # first match wins: the order resolves "離婚して今は独身" etc.
    ("single", re.compile(
        rf"独身|独り身|未婚|シングル|フリー(?!ランス)|(?:恋人|彼女|彼氏|パートナー|相手)(?:は|が)?{_NEG}"
        r"|(?:恋人|彼女|彼氏)(?:は)?(?:なし|無し|いない)|結婚は(?:まだ|して(?:い)?(?:ない|ません))"
        rf"|結婚して(?:い|お)?(?:ない|ません)|付き合って(?:い)?(?:ない|ません)"
    )),
    ("married", re.compile(r"再婚")),
    ("partnered", re.compile(
        r"(?<!理想の)(?:彼氏|彼女|恋人)(?:の名前は|は\S{1,10}?(?:って|と)(?:いい|言い))|交際|付き合って|付き合い中|婚約|同棲|(?<!理想の)(?:恋人|彼女|彼氏|パートナー)が(?:い|お)(?!い)"
    )),
    ("other", re.compile(r"離婚|バツイチ|死別|別居")),
    ("married", re.compile(
        r"既婚|結婚して(?:い|お|ま)|結婚しました|結婚した(?![いらくかがけろ])|結婚済|夫婦"
        r"|(?<!理想の)(?<!将来の)(?<!丈)(?:妻|夫|奥さん|奥様|嫁|旦那|主人)(?:が|と|は|の)"
    )),
)  # fmt: skip

# --- location and income ----------------------------------------------------------------
PREFECTURES: Final = _split(
    "北海道 青森 岩手 宮城 秋田 山形 福島 茨城 栃木 群馬 埼玉 千葉 東京 神奈川 新潟 富山 石川 "
    "福井 山梨 長野 岐阜 静岡 愛知 三重 滋賀 京都 大阪 兵庫 奈良 和歌山 鳥取 島根 岡山 広島 山口 "
    "徳島 香川 愛媛 高知 福岡 佐賀 長崎 熊本 大分 宮崎 鹿児島 沖縄"
)
CITIES: Final = _split(
    "札幌 仙台 さいたま 横浜 川崎 相模原 名古屋 神戸 北九州 那覇 浜松 堺 金沢 宇都宮 前橋 高崎 "
    "つくば 船橋 柏 松戸 八王子 町田 立川 鎌倉 藤沢 川口 所沢 大宮 浦和 姫路 西宮 尼崎 倉敷 松山 "
    "高松 大津 松本 豊田 岡崎 豊橋 函館 旭川 盛岡 郡山 いわき 水戸 甲府 四日市 下関 佐世保"
)
KNOWN_PLACES: Final = frozenset({*PREFECTURES, *CITIES})
LOCATION_ALIASES: Final = MappingProxyType({"都内": "東京", "道内": "北海道"})
NOT_A_PLACE: Final = re.compile(r"人|実家|家族|一緒|近く|ここ|そこ|どこ")
INCOME_PRIVATE: Final = re.compile(r"秘密|内緒|非公開|答えたくない|言いたくない|控えさせ")

# --- Big Five ---------------------------------------------------------------------------
TRAIT_KEYWORDS: Final = _scored("""
extraversion 0.8 社交的 外向的 話すのが好き
extraversion 0.75 明る 話し好き おしゃべり 活発 賑やか 友達が多
extraversion 0.85 陽キャ
extraversion 0.25 内向的 人見知り 物静か シャイ 一人が好き ひとりが好き 陰キャ インドア派
extraversion 0.8 人懐っこ 陽気 ノリがいい 盛り上げ役 ムードメーカー 誰とでも仲良く
extraversion 0.3 おとなし 大人し 口下手 控えめ
openness 0.8 好奇心 新しいこと 新しいもの 創造 クリエイティブ 想像力 冒険 探究心 独創
openness 0.7 芸術 多趣味 柔軟 新しいもの好き 凝り性 行動力
openness 0.3 保守的 堅実 安定志向 変化が苦手
conscientiousness 0.85 几帳面 計画的 勤勉 完璧主義
conscientiousness 0.8 真面目 まじめ 責任感 努力家 整理整頓 頑張り屋 がんばり屋 頑張りや きっちり
conscientiousness 0.7 しっかり 慎重
conscientiousness 0.25 ずぼら ズボラ 大雑把 おおざっぱ 飽きっぽ 面倒くさがり だらしな 飽き性 めんどくさがり
agreeableness 0.8 優し やさし 協調 親切 気配り 気遣い 面倒見 温厚 お人好し
agreeableness 0.85 思いやり
agreeableness 0.7 素直 聞き上手 人に合わせ 争いごとが苦手 争いが苦手
agreeableness 0.3 頑固 負けず嫌い 短気 自己主張 マイペース 我が強 気が強
neuroticism 0.8 心配性 心配症 緊張しやすい 落ち込みやすい 神経質 寂しがり 寂しがり屋 さみしがり
neuroticism 0.7 不安 繊細 打たれ弱 感情的 ネガティブ 気にしやすい 短気
neuroticism 0.25 落ち着い 穏やか おだやか ポジティブ 前向き のんびり おおらか 気にしない 楽天的 マイペース
neuroticism 0.2 楽観的 冷静 動じない メンタルが強
""")
# "明るい色が好き", "優しい人がいい": a word about something else than the person.
TRAIT_NOT_AFTER: Final = re.compile(
    r"(?:い|な|め)?の?(?:色|服|柄|曲|音楽|場所|部屋|もの|物|顔|目|表情)"
    r"|(?:い|な)?(?:人|方|相手)(?:が|を|に|と)"
)
NEGATION: Final = re.compile(
    r"(?:く|では|じゃ|には|に|は|が)?し?(?:なら|でき)?(?:ない|なく|ありません|ません)"
)
LOOKS: Final = ("そう", "さそう")  # 優しそうな目 describes a look, not a temperament
LOOK_NOUN: Final = re.compile(r"(?:い|な)?(?:顔|目|目元|表情)")  # 優しい顔: a look again
INTENSIFIER: Final = re.compile(r"(?:とても|すごく|かなり|非常に|めっちゃ|本当に|超)$")
SOFTENER: Final = re.compile(r"(?:少し|ちょっと|やや|わりと|割と|若干)$")
# What Hera says back; nouns or na-adjectives, so 「…」な reads naturally.
TRAIT_WORDS: Final = (
    ("extraversion", "社交的", "控えめ"),
    ("openness", "好奇心旺盛", "堅実"),
    ("conscientiousness", "几帳面", "おおらか"),
    ("agreeableness", "協調的", "率直"),
    ("neuroticism", "繊細", "穏やか"),
)

# --- partner ----------------------------------------------------------------------------
TEMPERAMENT: Final = _stems(
    "優しい=優し,やさし 明るい=明る,あかる 穏やか=穏やか,おだやか 面白い=面白,おもしろ "
    "真面目=真面目,まじめ 誠実 思いやりがある=思いやり 元気 落ち着いている=落ち着い "
    "賢い=賢い,頭がい,頭が良 頼りになる=頼り,頼もし 包容力がある=包容力 一途 素直 "
    "気が利く=気が利,気配り 前向き=前向き,ポジティブ 天然 しっかり者=しっかり 努力家 聞き上手 "
    "家庭的 温厚 おおらか=おおらか,大らか 社交的 控えめ 情熱的=情熱 ユーモアがある=ユーモア "
    "知的 物静か"
)
APPEARANCE: Final = _stems(
    "背が高い=背が高,高身長,長身 小柄=小柄,背が低,低身長 すらっとしている=すらっ,スラッ,スリム,細身 "
    "がっしり=がっしり,筋肉 ぽっちゃり=ぽっちゃり,ふくよか 黒髪=黒髪,黒い髪 茶髪=茶髪,茶色い髪 "
    "金髪 ロングヘア=ロング,髪が長,長い髪 ショートヘア=ショート,短髪,髪が短,短い髪 ボブ "
    "眼鏡=眼鏡,メガネ,めがね 笑顔が素敵=笑顔 色白 日焼けした肌=日焼け,小麦色 "
    "大きな目=目が大き,大きな目,大きい目,ぱっちり 二重 切れ長の目=切れ長 丸顔 面長 "
    "かわいい=かわい,可愛 かっこいい=かっこい,格好い,カッコい 美人=美人,綺麗,きれい イケメン "
    "爽やか=爽やか,さわやか 清楚 上品 おしゃれ=おしゃれ,お洒落,オシャレ ひげ=ひげ,髭,ヒゲ"
)
SPEAKING_STYLE: Final = _stems(
    "関西弁=関西弁,大阪弁 京都弁 博多弁 広島弁 名古屋弁 東北弁 方言 標準語 敬語 "
    "丁寧な話し方=丁寧な話,丁寧な言葉,丁寧な口調,話し方が丁寧,丁寧語 タメ口 "
    "おっとりした話し方=おっとり 早口"
)
LIFESTYLE: Final = _stems(
    "朝型=朝型,早起き 夜型=夜型,夜更かし インドア派=インドア アウトドア派=アウトドア "
    "在宅勤務=在宅,リモート 共働き 自炊 ジム通い=ジム 一人暮らし=一人暮らし,ひとり暮らし"
)
FACE_WORDS: Final = re.compile(  # a smile (笑顔) is a look, not the face
    r"(?<!笑)顔|(?<![面人])目(?![標的指])|瞳|鼻|口元|唇|眉|髪|肌|輪郭|えくぼ|まつ毛|見た目|ひげ"
)
FACE_ITSELF: Final = re.compile(r"顔|顔立ち")  # a later clause that changes a known face
# What may follow a given name as it is said: 健太さん, 健太って, 健太です, 健太。
AFTER_A_NAME: Final = (
    "さん",
    "くん",
    "君",
    "ちゃん",
    "って",
    "という",
    "と",
    "です",
    "だ",
    "。",
    "、",
)
# Stems that make a capture a description rather than a name.
DESCRIPTIVE: Final = tuple(
    sorted({s for _, stems in (*TEMPERAMENT, *APPEARANCE) for s in stems}
           | {s for s, _, _ in TRAIT_KEYWORDS})
)  # fmt: skip
TAIL: Final = re.compile(
    r"(?:がいいです|がいいな|がいい|が好きです|が好き|が理想です|が理想|です|だよ|だ|かな|。)+$"
)
HOBBY: Final = re.compile(r"趣味は\s*([^。!?]+)")
HOBBY_TAIL: Final = re.compile(r"(?:です|とか|など|かな|だよ|だ)+$")
HOBBY_SPLIT: Final = re.compile(r"[、,・]|と|や")

# --- names ------------------------------------------------------------------------------
NAME_IS: Final = re.compile(rf"名前(?:は|が|:)\s*「?({NAME_CHAR}{{1,14}})")
NAME_SAID: Final = re.compile(  # 妻はミカといいます, 彼氏はタカシって言います
    rf"(?:妻|夫|嫁|奥さん|旦那|主人|彼女|彼氏|恋人|パートナー)は\s*「?({NAME_CHAR}{{1,10}}?)」?"
    r"(?:って|と)(?:いい|言い|申し)"
)
NAME_OF: Final = re.compile(
    rf"(?:妻|夫|嫁|奥さん|奥様|旦那|主人|彼女|彼氏|恋人|パートナー)の\s*「?({NAME_CHAR}{{1,14}})"
)
HONORIFIC: Final = re.compile(
    rf"([{KANJI}]{{1,4}}|[{KATAKANA}]{{2,6}}|[{HIRAGANA}]{{2,5}})(?:さん|ちゃん|くん)"
)
NAME_LIST: Final = re.compile(r"名前(?:は|が|:)\s*「?([^。!?]+)")
NAME_SPLIT: Final = re.compile(r"([、,・/&]|と(?!と))")
NAME_STOP: Final = frozenset(
    _split(
        "名前 予定 未定 性別 子ども 子供 こども 男の子 女の子 息子 娘 妻 夫 嫁 彼女 彼氏 恋人 "
        "パートナー 相手 私 僕 俺 自分 人 方 こと もの 秘密 内緒 なし 無し ない 看護師 会社員 "
        "公務員 教師 先生 医者 学生 主婦 ヘラ 皆 みな お母 お父 父 母 兄 姉 弟 妹 奥 旦那 お子 "
        "理想 実家 家族 両親 趣味 性格 見た目 顔 仕事 職業 感じ 雰囲気 タイプ 最初 上 下 "
        "顔立ち 顔つき 外見 容姿 特徴 髪 目"
    )
)
NAME_REJECT: Final = re.compile(
    r"^(?:顔|見た目|外見|容姿|特徴)|決め|考え|分から|わから|まだ|欲し|ほし|好き|いい|良い|任せ|何でも|なんでも|特に"
)
NAME_TAIL: Final = re.compile(
    r"(?:さん|ちゃん|くん|君|様|です|でした|だよ|と言います|といいます|って言います"
    r"|っていいます|っていう名前|という名前|という|って名前|って|にしたい|がいいな|がいいかな"
    r"|がいい|が良い|にします|かな"
    r"|と考えています|を考えています|の予定|予定)$"
)
NAME_CONNECTORS: Final = "でとがはをにのもだや"

# --- children ---------------------------------------------------------------------------
CHILD_TOKENS: Final = (
    ("男の子", ("長男", "次男", "三男", "息子", "男の子", "男児")),
    ("女の子", ("長女", "次女", "三女", "娘", "女の子", "女児")),
    ("どちらでも", ("どちらでも", "どっちでも", "性別は問わ", "こだわらな")),
)
CHILD_GENDER_OF: Final = MappingProxyType({t: g for g, toks in CHILD_TOKENS for t in toks})
_CHILD_TOKEN_ALT: Final = alternation(CHILD_GENDER_OF)
CHILD_TOKEN: Final = re.compile(  # "2人の娘", "男の子が2人", "長男 太郎", "娘の名前はさくら"
    rf"(?:(?P<pre>\d)\s*人の)?(?P<tok>{_CHILD_TOKEN_ALT})(?:(?:が|を|は)?\s*(?P<n>\d)\s*人)?"
    rf"(?:(?:\s*(?:の名前は|の名前が|は|の|:)\s*|\s+)「?(?P<name>{NAME_CHAR}{{1,12}}))?"
)
NAMED_CHILD: Final = r"(?:くん|ちゃん)?(?:は|が|:)\s*(?P<tok>" + _CHILD_TOKEN_ALT + ")"
CHILD_COUNT: Final = re.compile(r"(?:子ども|子供|こども|子)(?:は|が|を)?\s*(\d)\s*人")

# --- Hera's words -----------------------------------------------------------------------
STATUS_ACK: Final = (
    ("married", "ご結婚されているのですね。"),
    ("partnered", "大切なお相手がいらっしゃるのですね。"),
    ("single", "今はおひとりなのですね。"),
    ("other", "教えてくださってありがとうございます。"),
)
PARTNER_ACK: Final = (
    ("name", "お名前が{}さん"),
    ("temperament", "ご性格が「{}」"),
    ("appearance", "見た目が「{}」"),
)
BASIC_LABELS: Final = (
    ("age", "年齢"),
    ("gender", "性別"),
    ("relationship_status", "ご結婚やお付き合いの状況（既婚・交際中・独身など）"),
)
PARTNER_LABELS: Final = (
    ("name", "お名前"),
    ("temperament", "ご性格"),
    ("appearance", "見た目（背格好や雰囲気）"),
)
# Wordings of each question: the first, then when Hera comes back to it.
QUESTIONS: Final = MappingProxyType(
    {
        "basics": (
            "あなたご自身のことを聞かせてください。{labels}を教えていただけますか？",
            "よろしければ、{labels}も教えてください。",
            "あとで構いませんので、{labels}を聞かせていただけますか？",
        ),
        "location": (
            "どちらにお住まいですか？（例: 東京、大阪）",
            "今お住まいの地域（都道府県や市区町村）を教えていただけますか？",
            "差し支えなければ、どのあたりにお住まいか聞かせてください。",
        ),
        "income_range": (
            "差し支えなければ、おおよその年収を教えていただけますか？（例: 500万円）",
            "年収はどのくらいでしょう？だいたいの金額や「〜万円くらい」で大丈夫です。",
            "もしよければ、年収の目安を聞かせてください（答えたくなければ「秘密」でも構いません）。",
        ),
        "user_personality_traits": (
            "あなたご自身はどんな性格ですか？「社交的」「几帳面」「心配性」「好奇心旺盛」など、"
            "思いつく言葉で教えてください。",
            "ご自分の性格を、友達によく言われる言葉で教えていただけますか？"
            "（例: 人見知り、頑張り屋、マイペース）",
            "あなたの性格についてもう少し聞かせてください。明るい・慎重・のんびり、など一言でも大丈夫です。",
        ),
        "partner_face_description": (
            "{pw}のお顔立ちを教えてください。目元や髪型、雰囲気など、思い浮かぶままにどうぞ。",
            "{pw}は、どんなお顔立ちでしょう？目や髪のことを一つ聞かせてください。",
        ),
        "partner": (
            "{pw}の{labels}を教えていただけますか？",
            "ところで、{pw}の{labels}も聞かせてください。",
        ),
        "ideal_name_hint": ("（思い描く方に付けたいお名前で構いません）",),
        "children_info": (
            "最後に、お子さまについて教えてください。男の子・女の子・どちらでも、"
            "思い描くお子さまとお名前を聞かせてください。",
            "お子さまは、男の子と女の子のどちらを思い描いていますか？お名前も教えてください。",
        ),
        "child_gender": (
            "お子さま（{names}）は、男の子・女の子・どちらでも、どれを思い描いていますか？",
            "{names}は、男の子ですか、女の子ですか？（どちらでも、でも大丈夫です）お子さまのことです。",
        ),
        "child_name": (
            "お子さまのお名前は、何にしましょうか？教えてください。",
            "お子さまに付けたいお名前を聞かせてください。",
        ),
    }
)
# Said when Hera sets a question aside because the person talked about something else.
SET_ASIDE: Final = MappingProxyType(
    {
        "basics": "ご年齢などは、また後で伺いますね。",
        "location": "お住まいのことは、また後で伺いますね。",
        "income_range": "年収のことは、また後ほど。",
        "user_personality_traits": "ご性格のことは、また後ほど。",
        "partner_face_description": "お顔立ちのことは、また後で伺いますね。",
        "partner": "お相手のことは、また後で伺いますね。",
        "children_info": "お子さまのことは、また後で伺いますね。",
    }
)
CONFIRM_PLACE: Final = "お住まいは「{place}」でよろしいですか？"
CONFIRM: Final = re.compile(r"「([^」]+)」でよろしいですか")
ALL_DONE: Final = "これで、あなたとご家族を思い描くのに必要なことはすべてお聞きできました。"
# Markers that identify what a Hera question asked, checked in this order (a children
# question also says お名前, a face question also says 髪型).
TOPIC_MARKERS: Final = (
    ("children_info", ("お子さま", "お子さん", "子ども", "子供")),
    ("partner_face_description", ("お顔", "顔立ち")),
    ("partner", ("お相手", "奥さま", "旦那さま", "パートナーの方", "お付き合いしている方")),
    ("user_personality_traits", ("性格",)),
    ("income_range", ("年収", "収入")),
    ("location", ("お住まい", "住んで", "お住まいの地域")),
    ("basics", ("年齢", "おいくつ", "性別", "ご結婚")),
)
TOPIC_PATTERNS: Final = tuple((name, re.compile(alternation(ms))) for name, ms in TOPIC_MARKERS)
SPOUSE_WORD: Final = MappingProxyType({"女性": "旦那さま", "男性": "奥さま"})  # by user's gender
PARTNER_SUB_MARKERS: Final = (
    ("name", ("お名前", "名前")),
    ("temperament", ("性格", "人柄")),
    ("appearance", ("見た目", "外見", "容姿")),
)


def partner_word(profile: Profile) -> str:
    """How Hera refers to the partner the interview is about."""
    status = profile.relationship_status
    if status == "married":
        spouse = SPOUSE_WORD.get(profile.gender or "")
        return spouse or "パートナーの方"
    return "お付き合いしている方" if status == "partnered" else "理想のお相手"


def _child_label(child: dict[str, Any]) -> str:
    gender = child.get("desired_gender")
    if not child.get("name"):
        return str(gender)
    suffix = "くん" if gender == "男の子" else "ちゃん"
    return f"{child['name']}{suffix}" + (f"（{gender}）" if gender else "")


def acknowledge(ex: dict[str, Any], pw: str) -> str:
    """Hera repeating back what she understood from one message (empty if nothing)."""
    said = [f"{ex['age']}歳" if "age" in ex else "", ex.get("gender", "")]
    said = [f"{'の'.join(filter(None, said))}でいらっしゃるのですね。"] if any(said) else []
    said += [text for value, text in STATUS_ACK if ex.get("relationship_status") == value]
    if "location" in ex:
        said.append(f"{ex['location']}にお住まいなのですね。")
    if (income := ex.get("income_range")) == "非公開":
        said.append("年収のことは伏せておきますね。")
    elif income:
        said.append(f"年収は{income}なのですね。")
    traits = ex.get("user_personality_traits", {})
    if words := [hi if traits[t] >= 0.5 else lo for t, hi, lo in TRAIT_WORDS if t in traits]:
        said.append("".join(f"「{w}」" for w in words) + "なところをお持ちなのですね。")
    if "interests" in ex:
        said.append(f"趣味は{'、'.join(ex['interests'])}なのですね。")
    if "partner_face_description" in ex:
        said.append(f"{pw}のお顔立ち、目に浮かぶようです。")
    partner = ex.get("current_partner") or ex.get("ideal_partner") or {}
    if details := [fmt.format(partner[k]) for k, fmt in PARTNER_ACK if k in partner]:
        said.append(f"{pw}は、{'、'.join(details)}ですね。")
    if children := ex.get("children_info"):
        kids = "と".join(map(_child_label, children))
        said.append(f"お子さまは{kids}ですね。素敵なご家族の姿が見えてきました。")
    return "".join(said)
